/**
 * The model repository: which models exist on disk, which versions of each are loaded, and the
 * load → warm up → ready → unload lifecycle (Triton's model repository, for ONNX models).
 *
 * Layout: `<repo>/<model>/config.json` (optional) + `<repo>/<model>/<version>/model.onnx`
 * (a model directory holding `model.onnx` directly is version 1; a folder with none of these is
 * not a model and is ignored). A path to a single `.onnx`
 * file is a repository of one model named after the file. Names and versions are checked
 * against a strict pattern and every file is resolved (symlinks included) inside the
 * repository root before anything is read, so no request can load a path outside it.
 *
 * Control modes: 'none' loads every model at start and refuses the repository API; 'explicit'
 * loads `startupModels` and then only what load()/unload() ask; 'poll' loads everything and
 * rescans every `pollIntervalMs`: a new or changed version is loaded and warmed up beside the
 * serving one and swapped in atomically, and the old one is disposed after its in-flight
 * requests finish (no request is dropped).
 *
 * Everything here runs on the event-loop thread; operations on one model are serialized by a
 * per-model promise chain, so a poll and an API load never race.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NimifyError } from '../runtime/errors';
import type { Model } from '../runtime/model';
import { parseUntrustedJson } from '../protocol/json';
import { loadModel, type PipelineSections } from '../pipeline/load';
import { Tensor, type TensorType } from '../runtime/tensor';
import { DATATYPE_TO_TYPE } from '../protocol/datatypes';
import { jsonElements, type WireModel, type WireTensor } from '../protocol/request';
import { completeConfig, loadOptionsFor, modelIo, parseModelConfig, wireModel, type CompletedConfig, type ModelConfig, type ModelDefaults, type VersionPolicy, type WarmupRequest } from './config';

export type ControlMode = 'none' | 'explicit' | 'poll';
export type VersionState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';

export interface RepositoryOptions {
  /** A repository directory, or a single .onnx file. */
  path: string;
  controlMode?: ControlMode;
  /** Models loaded at start in 'explicit' mode ('*' = all). */
  startupModels?: string[];
  /** Rescan period in 'poll' mode (default 5000). */
  pollIntervalMs?: number;
  defaults?: ModelDefaults;
  /** Where lifecycle events go (a pino logger in the server). */
  log?: RepositoryLog;
}

export interface RepositoryLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** One loaded (or loading, or failed) version of a model. */
export class ServedVersion {
  state: VersionState = 'LOADING';
  reason = '';
  model: Model | null = null;
  config: CompletedConfig | null = null;
  wire: WireModel | null = null;
  /**
   * The version's inputs and outputs as served (the completed config's), or the model's own when
   * its config did not complete; null until the model file loaded. Kept when the version fails
   * or is unloaded, so metadata can still describe a model that is not ready.
   */
  io: { inputs: WireTensor[]; outputs: WireTensor[] } | null = null;
  /** The lines of the config's postprocess.labels file (the model's pipeline read them when it loaded). */
  get labels(): string[] | null {
    return this.model?.pipeline?.labels ?? null;
  }
  /** Identifies the files this version was loaded from (poll mode reloads when it changes). */
  fingerprint = '';

  constructor(
    readonly name: string,
    readonly version: string,
    readonly file: string,
  ) {}

  get ready(): boolean {
    return this.state === 'READY';
  }
}

export interface IndexEntry {
  name: string;
  version?: string;
  state?: VersionState;
  reason?: string;
}

/** Model names: what Triton allows in practice, minus anything a path could abuse. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** A version directory's name (`<repo>/<model>/<version>/model.onnx`). */
export const VERSION_RE = /^(0|[1-9][0-9]{0,17})$/;

/** The name a single .onnx file is served under: its base name, made a valid model name. */
export function singleFileModelName(file: string): string {
  return path.basename(file, '.onnx').replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'model';
}

/** Errors that mean "nothing there" (gone, or a file where a folder would be): not worth a report. */
const ABSENT = new Set(['ENOENT', 'ENOTDIR']);
const isAbsent = (err: unknown): boolean => ABSENT.has((err as NodeJS.ErrnoException).code ?? '');

/** Whether a folder holds a model; throws when it cannot be read (EACCES, EIO, ELOOP…). */
async function looksLikeModel(dir: string): Promise<boolean> {
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isAbsent(err)) return false;
    throw err;
  }
  return entries.some((e) => ((e.name === 'config.json' || e.name === 'model.onnx') && !e.isDirectory()) || ((e.isDirectory() || e.isSymbolicLink()) && VERSION_RE.test(e.name)));
}

export function checkModelName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.includes('..')) {
    throw new NimifyError('INVALID_ARGUMENT', `model name: expected letters, digits, '_', '-' or '.' (not '..'), at most 128, starting with a letter or digit; received ${JSON.stringify(String(name).slice(0, 64))}`);
  }
  return name;
}

export function checkVersion(version: unknown): string {
  if (typeof version !== 'string' || !VERSION_RE.test(version)) {
    throw new NimifyError('INVALID_ARGUMENT', `model version: expected a non-negative integer, received ${JSON.stringify(String(version).slice(0, 32))}`);
  }
  return version;
}

interface ModelEntry {
  name: string;
  /** The model's directory (null for a single-file repository). */
  dir: string | null;
  versions: Map<string, ServedVersion>;
  /** Serializes load/unload/reload of this model. */
  chain: Promise<void>;
  /** Explicitly unloaded (API) or removed from disk. */
  unloaded: boolean;
  /** Why the model as a whole could not load (bad config.json, no version on disk); '' = none. */
  failure: string;
}

export class ModelRepository {
  readonly root: string;
  readonly controlMode: ControlMode;
  readonly #options: RepositoryOptions;
  readonly #single: boolean;
  readonly #models = new Map<string, ModelEntry>();
  #poll: NodeJS.Timeout | null = null;
  #polling: Promise<void> | null = null;
  #closed = false;
  #realRoot = '';

  private constructor(options: RepositoryOptions, root: string, single: boolean) {
    this.#options = options;
    this.root = root;
    this.#single = single;
    this.controlMode = options.controlMode ?? 'none';
  }

  /** Opens a repository (or a single .onnx file) and loads the startup set. Resolves when every startup load settled. */
  static async open(options: RepositoryOptions): Promise<ModelRepository> {
    const abs = path.resolve(options.path);
    let stat;
    try {
      stat = await fsp.stat(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new NimifyError('NOT_FOUND', `repository: '${abs}' does not exist (expected a model repository directory or an .onnx file)`);
      // EACCES, ENOTDIR, ELOOP, EIO…: the path may well exist; say what stopped us.
      throw new NimifyError('INVALID_ARGUMENT', `repository: cannot open '${abs}' (${code ?? 'error'}: ${(err as Error).message})`, { cause: err });
    }
    const single = stat.isFile();
    if (!single && !stat.isDirectory()) throw new NimifyError('INVALID_ARGUMENT', `repository: '${abs}' is neither a directory nor a file`);
    if (single && !abs.endsWith('.onnx')) throw new NimifyError('INVALID_ARGUMENT', `repository: '${abs}' is a file but not an .onnx model`);
    const repo = new ModelRepository(options, single ? path.dirname(abs) : abs, single);
    repo.#realRoot = await fsp.realpath(repo.root);
    if (single) {
      const name = singleFileModelName(abs);
      repo.#models.set(name, { name, dir: null, versions: new Map(), chain: Promise.resolve(), unloaded: false, failure: '' });
      repo.#singleFile = abs;
    } else {
      await repo.#scan();
    }
    const startup = repo.#startupSet();
    await Promise.all(startup.map((name) => repo.#enqueue(name, async () => void (await repo.#syncModel(name)))));
    if (repo.controlMode === 'poll') repo.#startPolling();
    return repo;
  }

  #singleFile = '';

  #startupSet(): string[] {
    const all = [...this.#models.keys()];
    if (this.#single || this.controlMode !== 'explicit') return all;
    const wanted = this.#options.startupModels ?? [];
    if (wanted.includes('*')) return all;
    for (const name of wanted) {
      if (!this.#models.has(name)) throw new NimifyError('NOT_FOUND', `startup model '${name}' is not in the repository ${this.root}`);
    }
    for (const name of all) if (!wanted.includes(name)) this.#models.get(name)!.unloaded = true;
    return wanted;
  }

  /**
   * Adds entries for model directories on disk; marks vanished ones. A folder that cannot be read
   * (EACCES, EIO, a symlink loop…) may hold a model: it gets an entry, UNAVAILABLE with the error
   * as its reason (loading it reports the same error), and a warning, instead of being skipped.
   */
  async #scan(): Promise<string[]> {
    const dirents = await fsp.readdir(this.root, { withFileTypes: true });
    const seen: string[] = [];
    for (const d of dirents) {
      if (!d.isDirectory() && !d.isSymbolicLink()) continue;
      if (!NAME_RE.test(d.name) || d.name.includes('..')) continue;
      const dir = path.join(this.root, d.name);
      let unreadable: Error | null = null;
      try {
        if (!(await this.#inside(dir))) continue;
        // A folder with no config.json, no model.onnx and no version folder is not a model (sample
        // images, docs beside the models): ignored until it becomes one.
        if (!this.#models.has(d.name) && !(await looksLikeModel(dir))) continue;
      } catch (err) {
        if (isAbsent(err)) continue;
        unreadable = err as Error;
      }
      seen.push(d.name);
      let entry = this.#models.get(d.name);
      if (entry === undefined) {
        entry = { name: d.name, dir, versions: new Map(), chain: Promise.resolve(), unloaded: this.controlMode === 'explicit', failure: '' };
        this.#models.set(d.name, entry);
      }
      if (unreadable !== null) {
        const reason = `cannot read the model folder ${dir} (${unreadable.message})`;
        // Once per new failure: a poll rescans every few seconds.
        if (entry.failure !== reason) this.#options.log?.warn({ model: d.name, reason }, `model '${d.name}': ${reason}`);
        entry.failure = reason;
      }
    }
    return seen;
  }

  /**
   * True when `p` resolves (symlinks followed) to a path inside the repository root; false when
   * it does not exist. Other errors (EACCES, ELOOP, EIO…) are thrown: the caller reports them.
   */
  async #inside(p: string): Promise<boolean> {
    let real: string;
    try {
      real = await fsp.realpath(p);
    } catch (err) {
      if (isAbsent(err)) return false;
      throw err;
    }
    return real === this.#realRoot || real.startsWith(this.#realRoot + path.sep);
  }

  #enqueue(name: string, op: () => Promise<void>): Promise<void> {
    const entry = this.#models.get(name)!;
    const next = entry.chain.then(op, op);
    entry.chain = next.catch(() => undefined);
    return next;
  }

  async #readConfig(entry: ModelEntry): Promise<{ config: ModelConfig; stamp: string }> {
    if (entry.dir === null) return { config: {}, stamp: '' };
    const file = path.join(entry.dir, 'config.json');
    let text: string;
    let stamp: string;
    try {
      const st = await fsp.stat(file);
      if (!(await this.#inside(file))) throw new NimifyError('INVALID_ARGUMENT', `${file}: resolves outside the repository`);
      text = await fsp.readFile(file, 'utf8');
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { config: {}, stamp: 'none' };
      throw err;
    }
    const config = parseModelConfig(`${entry.name}/config.json`, parseUntrustedJson(file, text));
    if (config.name !== undefined && config.name !== entry.name) {
      throw new NimifyError('INVALID_ARGUMENT', `${file}: name '${config.name}' does not match the directory '${entry.name}'`);
    }
    // The pipeline's files are part of the config: editing one reloads the model in poll mode.
    for (const name of [config.preprocess?.type === 'text' ? config.preprocess.tokenizer : null, config.postprocess?.labels ?? null]) {
      if (name === null) continue;
      const st = await fsp.stat(path.join(entry.dir, name)).catch(() => null);
      stamp += `|${name}:${st === null ? 'none' : `${st.size}:${st.mtimeMs}`}`;
    }
    return { config, stamp };
  }

  /** Version directories on disk (with their model file and its fingerprint). */
  async #versionsOnDisk(entry: ModelEntry): Promise<Map<string, { file: string; stamp: string }>> {
    const out = new Map<string, { file: string; stamp: string }>();
    const add = async (version: string, file: string) => {
      try {
        if (!(await this.#inside(file))) return;
        const st = await fsp.stat(file);
        if (st.isFile()) out.set(version, { file, stamp: `${st.size}:${st.mtimeMs}` });
      } catch (err) {
        if (isAbsent(err)) return; // no model file in this version directory
        // Unreadable (EACCES…): a version whose load fails with that error, not one silently missing.
        out.set(version, { file, stamp: `unreadable:${(err as NodeJS.ErrnoException).code ?? ''}` });
      }
    };
    if (entry.dir === null) {
      await add('1', this.#singleFile);
      return out;
    }
    for (const d of await fsp.readdir(entry.dir, { withFileTypes: true })) {
      if ((d.isDirectory() || d.isSymbolicLink()) && VERSION_RE.test(d.name)) await add(d.name, path.join(entry.dir, d.name, 'model.onnx'));
    }
    if (out.size === 0) await add('1', path.join(entry.dir, 'model.onnx'));
    return out;
  }

  static #selectVersions(policy: VersionPolicy, available: string[]): string[] {
    const sorted = available.slice().sort((a, b) => Number(b) - Number(a));
    if (policy === 'all') return sorted;
    if ('latest' in policy) return sorted.slice(0, policy.latest);
    return sorted.filter((v) => policy.specific.includes(Number(v)));
  }

  /**
   * Brings a model's loaded versions in line with the disk and its config: loads versions the
   * policy selects that are not loaded or whose files changed, unloads the others. A replaced
   * version keeps serving until its successor is ready.
   */
  async #syncModel(name: string, override?: ModelConfig): Promise<string[]> {
    const entry = this.#models.get(name)!;
    entry.unloaded = false;
    const failures: string[] = [];
    let config: ModelConfig;
    let stamp: string;
    try {
      ({ config, stamp } = await this.#readConfig(entry));
      if (override !== undefined) config = { ...config, ...override };
    } catch (err) {
      this.#failAll(entry, err);
      return [err instanceof Error ? err.message : String(err)];
    }
    let onDisk: Map<string, { file: string; stamp: string }>;
    try {
      onDisk = await this.#versionsOnDisk(entry);
    } catch (err) {
      const failure = new NimifyError('INVALID_MODEL', `cannot read the model folder ${entry.dir} (${(err as Error).message})`, { cause: err });
      this.#failAll(entry, failure);
      return [failure.message];
    }
    const wanted = ModelRepository.#selectVersions(config.versionPolicy ?? { latest: 1 }, [...onDisk.keys()]);
    if (wanted.length === 0) {
      const err = new NimifyError('NOT_FOUND', `no version of '${name}' on disk matches its version policy`);
      this.#failAll(entry, err);
      return [err.message];
    }
    entry.failure = '';
    await Promise.all(
      wanted.map(async (version) => {
        const { file, stamp: fileStamp } = onDisk.get(version)!;
        const fingerprint = `${fileStamp}|${stamp}|${override ? JSON.stringify(override) : ''}`;
        const current = entry.versions.get(version);
        if (current !== undefined && current.fingerprint === fingerprint && (current.state === 'READY' || current.state === 'LOADING')) return;
        const next = new ServedVersion(name, version, file);
        next.fingerprint = fingerprint;
        // A version being replaced keeps serving until `next` is ready.
        if (current === undefined || current.state !== 'READY') entry.versions.set(version, next);
        await this.#loadVersion(next, config);
        if (this.#closed) {
          await next.model?.dispose();
          return;
        }
        if (next.state !== 'READY') failures.push(`version ${version}: ${next.reason}`);
        if (next.state === 'READY' || current?.state !== 'READY') {
          entry.versions.set(version, next);
          if (current !== undefined && current !== next) await this.#retire(current, 'replaced by a newer load');
        } else {
          this.#options.log?.error({ model: name, version, reason: next.reason }, 'reload failed; the previous load keeps serving');
        }
      }),
    );
    for (const [version, v] of entry.versions) {
      if (!wanted.includes(version)) {
        entry.versions.delete(version);
        await this.#retire(v, 'no longer selected by the version policy');
      }
    }
    return failures;
  }

  /**
   * Checks that the files a config's pipeline names (tokenizer, labels: plain names beside
   * config.json, checked when parsed) resolve inside the repository, symlinks followed.
   */
  async #checkPipelineFiles(dir: string, config: ModelConfig): Promise<void> {
    const named: Array<[string, string]> = [];
    if (config.preprocess?.type === 'text') named.push(['config.preprocess.tokenizer', config.preprocess.tokenizer]);
    if (config.postprocess?.labels) named.push(['config.postprocess.labels', config.postprocess.labels]);
    for (const [where, name] of named) {
      const file = path.join(dir, name);
      let exists = true;
      try {
        await fsp.lstat(file);
      } catch {
        exists = false; // the pipeline reports a missing file, naming it
      }
      if (exists && !(await this.#inside(file))) throw new NimifyError('INVALID_ARGUMENT', `${where}: ${name} resolves outside the repository`);
    }
  }

  async #loadVersion(v: ServedVersion, config: ModelConfig): Promise<void> {
    const log = this.#options.log;
    const defaults = this.#options.defaults ?? {};
    try {
      if (!(await this.#inside(v.file))) throw new NimifyError('INVALID_ARGUMENT', `${v.file}: resolves outside the repository`);
      // The pipeline's files sit beside config.json, in the model's folder.
      const dir = this.#models.get(v.name)?.dir ?? null;
      let pipeline: PipelineSections | undefined;
      if (dir !== null && (config.preprocess !== undefined || config.postprocess !== undefined)) {
        await this.#checkPipelineFiles(dir, config);
        pipeline = { where: 'config', preprocess: config.preprocess ?? null, postprocess: config.postprocess ?? null, dir };
      }
      v.model = await loadModel(v.file, loadOptionsFor(config, defaults), pipeline);
      v.io = modelIo(v.model);
      v.config = completeConfig(v.name, config, defaults, v.model);
      v.io = { inputs: v.config.inputs, outputs: v.config.outputs };
      v.wire = wireModel(v.config);
      const warmupRuns = await runWarmup(v, v.model, v.config, log);
      // Warmup runs are not inferences anyone asked for: the stats route and the Prometheus
      // counters start from zero (the model is idle here: every warmup request was awaited).
      v.model.resetStats();
      v.state = 'READY';
      v.reason = '';
      log?.info({ model: v.name, version: v.version, config: v.config, warmupRuns }, 'model ready');
    } catch (err) {
      v.state = 'UNAVAILABLE';
      v.reason = err instanceof Error ? err.message : String(err);
      const model = v.model;
      v.model = null;
      await model?.dispose();
      log?.error({ model: v.name, version: v.version, reason: v.reason }, 'model failed to load');
    }
  }

  /**
   * Stops routing to `v`, lets every request it already accepted (queued ones included) finish,
   * then disposes it. Requests that resolved `v` before the state change still run: resolve()
   * and infer() happen in one synchronous handler step.
   */
  async #retire(v: ServedVersion, reason: string): Promise<void> {
    if (v.state === 'READY') v.state = 'UNLOADING';
    v.reason = reason;
    const model = v.model;
    await model?.whenIdle();
    await model?.dispose();
    v.model = null;
    v.state = 'UNAVAILABLE';
    this.#options.log?.info({ model: v.name, version: v.version, reason }, 'model version unloaded');
  }

  #failAll(entry: ModelEntry, err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    this.#options.log?.error({ model: entry.name, reason }, 'model failed to load');
    entry.failure = reason;
    for (const v of entry.versions.values()) {
      if (v.state !== 'READY') {
        v.state = 'UNAVAILABLE';
        v.reason = reason;
      }
    }
  }

  /** Model names known to the repository (loaded or not). */
  names(): string[] {
    return [...this.#models.keys()].sort();
  }

  has(name: string): boolean {
    return this.#models.has(name);
  }

  /** Versions of a model currently in the repository's tables, newest first. */
  versions(name: string): ServedVersion[] {
    const entry = this.#models.get(name);
    if (entry === undefined) return [];
    return [...entry.versions.values()].sort((a, b) => Number(b.version) - Number(a.version));
  }

  /**
   * The version a request goes to: the given one, or the newest READY one. Throws NOT_FOUND for
   * an unknown model/version and NOT_READY while it loads, unloads or after it failed.
   */
  resolve(name: string, version?: string): ServedVersion {
    const entry = this.#models.get(name);
    if (entry === undefined) throw new NimifyError('NOT_FOUND', `unknown model '${name}'`);
    if (version !== undefined) {
      const v = entry.versions.get(version);
      if (v === undefined) throw new NimifyError('NOT_FOUND', `model '${name}' has no version '${version}' loaded (versions: ${this.versions(name).map((x) => x.version).join(', ') || 'none'})`);
      if (!v.ready) throw new NimifyError('NOT_READY', `model '${name}' version ${version} is not ready (${v.state}${v.reason ? `: ${v.reason}` : ''})`);
      return v;
    }
    const all = this.versions(name);
    const ready = all.find((v) => v.ready);
    if (ready !== undefined) return ready;
    if (entry.unloaded && all.every((v) => v.state === 'UNAVAILABLE')) throw new NimifyError('NOT_FOUND', `model '${name}' is not loaded`);
    const first = all[0];
    const why = first ? `${first.state}${first.reason ? `: ${first.reason}` : ''}` : entry.failure ? `UNAVAILABLE: ${entry.failure}` : 'not loaded';
    throw new NimifyError('NOT_READY', `model '${name}' is not ready (${why})`);
  }

  /** True when every model in the startup set (or loaded since) has a READY version. */
  ready(): boolean {
    for (const entry of this.#models.values()) {
      if (entry.unloaded) continue;
      if (!this.versions(entry.name).some((v) => v.ready)) return false;
    }
    return !this.#closed;
  }

  /** Triton's repository index: one entry per model version (and one for models never loaded). */
  index(readyOnly = false): IndexEntry[] {
    const out: IndexEntry[] = [];
    for (const name of this.names()) {
      const entry = this.#models.get(name)!;
      const versions = [...entry.versions.values()];
      if (versions.length === 0) {
        if (!readyOnly) out.push(entry.failure ? { name, state: 'UNAVAILABLE', reason: entry.failure } : { name });
        continue;
      }
      for (const v of versions.sort((a, b) => Number(a.version) - Number(b.version))) {
        if (readyOnly && !v.ready) continue;
        const e: IndexEntry = { name, version: v.version, state: v.state };
        if (v.reason) e.reason = v.reason;
        out.push(e);
      }
    }
    return out;
  }

  #checkApi(): void {
    if (this.#closed) throw new NimifyError('DISPOSED', 'the repository is closed');
    if (this.controlMode !== 'explicit') {
      throw new NimifyError('UNSUPPORTED', `model control mode is '${this.controlMode}': load and unload need --control-mode explicit`);
    }
  }

  /**
   * Loads (or reloads) a model by name; resolves when every selected version is ready, rejects
   * with the reasons otherwise (a version that was serving before keeps serving).
   */
  async load(name: string, override?: ModelConfig): Promise<void> {
    this.#checkApi();
    checkModelName(name);
    if (!this.#models.has(name)) await this.#scan();
    if (!this.#models.has(name)) throw new NimifyError('NOT_FOUND', `no model '${name}' in the repository`);
    let failures: string[] = [];
    await this.#enqueue(name, async () => {
      failures = await this.#syncModel(name, override);
    });
    if (failures.length > 0) {
      const serving = this.versions(name).some((v) => v.ready);
      throw new NimifyError('INVALID_MODEL', `model '${name}' failed to load${serving ? ' (the previous load keeps serving)' : ''}: ${failures.join('; ')}`);
    }
  }

  /** Unloads every version of a model; in-flight requests finish first. */
  async unload(name: string): Promise<void> {
    this.#checkApi();
    checkModelName(name);
    const entry = this.#models.get(name);
    if (entry === undefined) throw new NimifyError('NOT_FOUND', `no model '${name}' in the repository`);
    await this.#enqueue(name, async () => {
      entry.unloaded = true;
      await Promise.all([...entry.versions.values()].map((v) => this.#retire(v, 'unloaded')));
    });
  }

  #startPolling(): void {
    const interval = this.#options.pollIntervalMs ?? 5000;
    this.#poll = setInterval(() => {
      if (this.#polling !== null || this.#closed) return;
      this.#polling = this.pollOnce()
        .catch((err) => this.#options.log?.error({ err }, 'repository poll failed'))
        .finally(() => (this.#polling = null));
    }, interval);
    this.#poll.unref();
  }

  /** One poll-mode rescan (also callable directly, e.g. by tests): loads, reloads and unloads to match the disk. */
  async pollOnce(): Promise<void> {
    if (this.#single) {
      const only = [...this.#models.keys()][0];
      await this.#enqueue(only, async () => void (await this.#syncModel(only)));
      return;
    }
    const present = await this.#scan();
    await Promise.all(
      [...this.#models.keys()].map((name) =>
        this.#enqueue(name, async () => {
          const entry = this.#models.get(name)!;
          if (!present.includes(name)) {
            entry.unloaded = true;
            await Promise.all([...entry.versions.values()].map((v) => this.#retire(v, 'removed from the repository')));
            this.#models.delete(name);
            return;
          }
          await this.#syncModel(name);
        }),
      ),
    );
  }

  /** Stops polling and disposes every model after its in-flight requests. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poll) clearInterval(this.#poll);
    await this.#polling;
    await Promise.all([...this.#models.values()].map((entry) => entry.chain.then(() => Promise.all([...entry.versions.values()].map((v) => this.#retire(v, 'server shutting down'))))));
  }
}

/**
 * Runs a version's warmup requests in order. A request that fails makes the version UNAVAILABLE
 * (the error thrown) unless it is optional — the automatic warmup is — in which case the failure
 * is logged as a warning naming the model, what was fed and ONNX Runtime's message, and the
 * version still becomes READY: a guessed warmup never takes a model down. Resolves with the
 * number of warmup inferences that succeeded (logged: the model's own counters are zeroed after).
 */
async function runWarmup(v: ServedVersion, model: Model, config: CompletedConfig, log: RepositoryLog | undefined): Promise<number> {
  let runs = 0;
  for (const [i, req] of config.warmup.entries()) {
    const where = `warmup[${i}]${req.name ? ` (${req.name})` : ''}`;
    try {
      const feeds = warmupFeeds(`warmup[${i}]`, req, config);
      for (let n = 0; n < (req.count ?? 1); n++) {
        try {
          await model.infer(feeds);
          runs++;
        } catch (err) {
          throw new NimifyError('INVALID_MODEL', `${where} failed: ${(err as Error).message}`, { cause: err });
        }
      }
    } catch (err) {
      if (req.optional !== true) throw err;
      const fed = describeWarmup(req, config);
      log?.warn(
        { model: v.name, version: v.version, warmup: req.name ?? i, inputs: fed, reason: (err as Error).message },
        `model '${v.name}' version ${v.version}: optional ${where} with ${fed} failed; the model is served anyway (set "warmup" in its config.json to warm it up with inputs it takes): ${(err as Error).message}`,
      );
    }
  }
  return runs;
}

/** The feeds of one warmup request, checked against the model's inputs. */
export function warmupFeeds(where: string, req: WarmupRequest, config: CompletedConfig): Record<string, Tensor> {
  for (const name of Object.keys(req.inputs)) {
    if (!config.inputs.some((t) => t.name === name)) throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs: the model has no input '${name}' (it has ${config.inputs.map((t) => `'${t.name}'`).join(', ')})`);
  }
  const feeds: Record<string, Tensor> = {};
  for (const input of config.inputs) {
    // Own keys only: an input named `constructor` or `toString` must not find Object's.
    const spec = Object.hasOwn(req.inputs, input.name) ? req.inputs[input.name] : undefined;
    if (spec === undefined) throw new NimifyError('INVALID_ARGUMENT', `${where}: no value for input '${input.name}'`);
    const fits = spec.shape.length === input.shape.length && spec.shape.every((d, j) => input.shape[j] < 0 || d === input.shape[j]);
    if (!fits) {
      throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs.${input.name}.shape: input '${input.name}' needs shape [${input.shape.join(', ')}] (-1 = any), the warmup gives [${spec.shape.join(', ')}]`);
    }
    feeds[input.name] = warmupTensor(`${where}.inputs.${input.name}`, input, spec);
  }
  return feeds;
}

/** What a warmup request feeds, for logs: `name DATATYPE [dims] zeros|random|data`, per input. */
function describeWarmup(req: WarmupRequest, config: CompletedConfig): string {
  return config.inputs
    .filter((t) => Object.hasOwn(req.inputs, t.name))
    .map((t) => {
      const spec = req.inputs[t.name];
      const values = spec.data !== undefined ? `= ${JSON.stringify(spec.data).slice(0, 40)}` : spec.fill === 'random' ? 'random' : 'zeros';
      return `${t.name} ${t.datatype} [${spec.shape.join(', ')}] ${values}`;
    })
    .join(', ');
}

function warmupTensor(where: string, input: WireTensor, spec: WarmupRequest['inputs'][string]): Tensor {
  const type: TensorType = DATATYPE_TO_TYPE[input.datatype];
  const count = spec.shape.reduce((a, b) => a * b, 1);
  // `data` means what an inference request's JSON data means (FP16 as numbers, BOOL as booleans).
  if (spec.data !== undefined) return new Tensor(type, jsonElements(where, input.datatype, spec.data, spec.shape, count) as never, spec.shape);
  if (type === 'string') return new Tensor('string', new Array<string>(count).fill(''), spec.shape);
  const t = new Tensor(type, new Array(count).fill(0) as never, spec.shape);
  if (spec.fill === 'random') {
    const d = t.data as unknown as { [i: number]: number | bigint; length: number };
    for (let i = 0; i < d.length; i++) {
      const r = Math.random();
      if (type === 'int64' || type === 'uint64') d[i] = BigInt(Math.floor(r * 8));
      else if (type === 'float32' || type === 'float64') d[i] = r;
      else if (type === 'bool') d[i] = r < 0.5 ? 0 : 1;
      else if (type === 'float16') d[i] = 0x3c00; // 1.0
      else if (type === 'bfloat16') d[i] = 0x3f80; // 1.0
      else d[i] = Math.floor(r * 8);
    }
  }
  return t;
}
