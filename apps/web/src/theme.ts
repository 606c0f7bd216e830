/** Light/dark theme: follows prefers-color-scheme unless the operator picked one (kept locally). */
export type ThemeChoice = 'system' | 'light' | 'dark';
const KEY = 'periscope.theme';

export function storedTheme(): ThemeChoice {
  const v = localStorage.getItem(KEY);
  return v === 'light' || v === 'dark' ? v : 'system';
}

const media = (): MediaQueryList => window.matchMedia('(prefers-color-scheme: dark)');

export function effectiveTheme(choice: ThemeChoice): 'light' | 'dark' {
  if (choice !== 'system') return choice;
  return media().matches ? 'dark' : 'light';
}

/** Sets `data-theme` on <html>; the CSS variables and the terminal colours follow it. */
export function applyTheme(choice: ThemeChoice): void {
  if (choice === 'system') localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, choice);
  document.documentElement.dataset['theme'] = effectiveTheme(choice);
}

export function watchSystemTheme(onChange: () => void): () => void {
  const m = media();
  m.addEventListener('change', onChange);
  return () => {
    m.removeEventListener('change', onChange);
  };
}
