package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// conciseHandler keeps virtual-kubelet's log output short: multi-line values (errors formatted
// with stack traces) are cut to their first line, and routine optimistic-concurrency conflicts
// and expected notices ("skipping sync of terminal pod", the end-of-grace-period force delete)
// are demoted to debug. Attributes added with With are held here so that they can be filtered too.
type conciseHandler struct {
	base  slog.Handler
	attrs []slog.Attr
}

func (h *conciseHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.base.Enabled(ctx, l)
}

func (h *conciseHandler) Handle(ctx context.Context, r slog.Record) error {
	// VK's own grace-period timer races our SIGKILL at the end of a pod's grace period.
	noisy := strings.Contains(r.Message, "skipping sync of pod") ||
		strings.Contains(r.Message, "Force deleting pod in running state") ||
		strings.Contains(r.Message, "as told to forget while in progress")
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	add := func(a slog.Attr) bool {
		v := a.Value.Resolve()
		var s string
		switch v.Kind() {
		case slog.KindString:
			s = v.String()
		case slog.KindAny:
			if err, ok := v.Any().(error); ok {
				s = err.Error()
			} else {
				s = fmt.Sprint(v.Any())
			}
		default:
			out.AddAttrs(a)
			return true
		}
		if strings.Contains(s, "the object has been modified") {
			noisy = true
		}
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		out.AddAttrs(slog.String(a.Key, s))
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if noisy {
		if !h.base.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		out.Level = slog.LevelDebug
	}
	return h.base.Handle(ctx, out)
}

func (h *conciseHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &conciseHandler{base: h.base, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *conciseHandler) WithGroup(name string) slog.Handler {
	return &conciseHandler{base: h.base.WithGroup(name), attrs: h.attrs}
}
