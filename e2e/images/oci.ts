/**
 * Writes OCI image layouts (https://github.com/opencontainers/image-spec, layout + manifest +
 * config) from directory trees, reproducibly: layers are tarred by GNU tar sorted by name with
 * every mtime set to SOURCE_DATE_EPOCH and numeric owners, gzip headers carry no time, and the
 * config's dates are the same epoch. Same trees and epoch → same bytes → same digests.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface Layer extends Descriptor {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry) */
  diffId: string;
  /** what made it (the config's history entry) */
  createdBy: string;
}

/** The OCI config's `config` object (the keys this builder sets). */
export interface RunConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
}

const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** GNU tar arguments that make the archive depend on the tree only. */
export function reproducibleTarArgs(epoch: number): string[] {
  return [
    '--sort=name',
    '--format=posix',
    `--mtime=@${epoch}`,
    '--clamp-mtime',
    '--numeric-owner',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  ];
}

function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/**
 * Adds one gzip layer to `layoutDir`'s blobs from an uncompressed tar stream's source: a directory
 * (tarred here) or an existing tar file (e.g. mmdebstrap's root file system).
 */
export async function addLayer(
  layoutDir: string,
  source: { dir: string } | { tar: string },
  epoch: number,
  createdBy: string,
): Promise<Layer> {
  const blobs = join(layoutDir, 'blobs/sha256');
  mkdirSync(blobs, { recursive: true });
  const tmp = join(blobs, `.layer-${process.pid}-${Date.now()}`);
  const diff = createHash('sha256');
  const digest = createHash('sha256');
  let input: NodeJS.ReadableStream;
  let tarDone: Promise<void> = Promise.resolve();
  if ('dir' in source) {
    const tar = spawn('tar', ['--create', ...reproducibleTarArgs(epoch), '-C', source.dir, '.'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    tar.stderr.on('data', (d: Buffer) => {
      if (err.length < 4096) err += d.toString();
    });
    tarDone = new Promise((resolve, reject) =>
      tar.on('close', (code) => {
        if (code === 0) resolve();
        else reject(new Error(`tar ${source.dir}: ${err}`));
      }),
    );
    input = tar.stdout;
  } else {
    input = createReadStream(source.tar);
  }
  await pipeline(input, hashing(diff), createGzip({ level: 6 }), hashing(digest), createWriteStream(tmp));
  await tarDone;
  const hex = digest.digest('hex');
  renameSync(tmp, join(blobs, hex));
  return {
    mediaType: LAYER_TYPE,
    digest: `sha256:${hex}`,
    size: statSync(join(blobs, hex)).size,
    diffId: `sha256:${diff.digest('hex')}`,
    createdBy,
  };
}

function writeBlob(layoutDir: string, body: string): Descriptor & { hex: string } {
  const hex = createHash('sha256').update(body).digest('hex');
  mkdirSync(join(layoutDir, 'blobs/sha256'), { recursive: true });
  writeFileSync(join(layoutDir, 'blobs/sha256', hex), body);
  return { mediaType: '', digest: `sha256:${hex}`, size: Buffer.byteLength(body), hex };
}

/** Writes config, manifest, index.json and oci-layout; returns the manifest digest. */
export function writeImage(
  layoutDir: string,
  opts: {
    layers: Layer[];
    config: RunConfig;
    epoch: number;
    tag: string;
    annotations?: Record<string, string>;
  },
): { manifestDigest: string; configDigest: string } {
  const created = new Date(opts.epoch * 1000).toISOString().replace('.000Z', 'Z');
  const config = {
    created,
    architecture: 'amd64',
    os: 'linux',
    config: opts.config,
    rootfs: { type: 'layers', diff_ids: opts.layers.map((l) => l.diffId) },
    history: opts.layers.map((l) => ({ created, created_by: l.createdBy })),
  };
  const cfg = writeBlob(layoutDir, JSON.stringify(config));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg.digest, size: cfg.size },
    layers: opts.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  };
  const man = writeBlob(layoutDir, JSON.stringify(manifest));
  writeFileSync(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layoutDir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: manifest.mediaType,
          digest: man.digest,
          size: man.size,
          annotations: { 'org.opencontainers.image.ref.name': opts.tag },
        },
      ],
    }),
  );
  return { manifestDigest: man.digest, configDigest: cfg.digest };
}

/** Packs an OCI layout directory into an `oci-archive` tar (what `skopeo copy oci-archive:` reads). */
export function packArchive(layoutDir: string, archive: string, epoch: number): void {
  const tmp = `${archive}.tmp`;
  execFileSync(
    'tar',
    ['--create', ...reproducibleTarArgs(epoch), '--owner=0', '--group=0', '-f', tmp, '-C', layoutDir, '.'],
    {
      stdio: 'pipe',
    },
  );
  renameSync(tmp, archive);
}
