// SPDX-License-Identifier: Apache-2.0
// A Dockerfile's stages, read by dockerfile-ast (the parser of the Docker
// language server), .dockerignore's build context as Docker reads it, and the
// stages' steps played on this host: no Docker engine runs on these machines. The host stands in for the base images (it must
// have the packages their apt-get lines install); COPY, WORKDIR, ENV and every
// other RUN happen for real, each stage in a directory of its own.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DockerfileParser, type Copy, type Env, type Instruction, type JSONInstruction } from 'dockerfile-ast';

export interface Stage {
  /** the name after AS, or its index */
  name: string;
  /** the image, with the ARGs declared before the first FROM substituted */
  from: string;
  steps: Instruction[];
}

/** A glob as .dockerignore reads it (Go's filepath.Match, ** added): * and ?
 * stop at "/". */
function globRegExp(pattern: string): RegExp {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*/g, '\0')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]')
    .replace(/\0/g, '.*');
  return new RegExp(`^${re}$`);
}

/** The stages of a Dockerfile, as dockerfile-ast reads it. */
export function parseDockerfile(text: string): Stage[] {
  const dockerfile = DockerfileParser.parse(text);
  const froms = dockerfile.getFROMs();
  if (!froms.length) throw new Error('Dockerfile: no FROM');
  const early = dockerfile.getInstructions().find((i) => i.getRange().start.line < froms[0]!.getRange().start.line && i.getKeyword() !== 'ARG');
  if (early) throw new Error(`Dockerfile: ${early.getKeyword()} before FROM`);
  return froms.map((from, i) => ({
    name: from.getBuildStage() ?? String(i),
    from: from.getExpandedArguments()[0]!.getValue(),
    steps: dockerfile
      .getContainingImage(from.getRange().start)!
      .getInstructions()
      .filter((step) => step !== from),
  }));
}

/** The packages an `apt-get install` in a RUN names. */
export function aptPackages(run: string): string[] {
  const m = /apt-get install ([^&;|]*)/.exec(run);
  return m ? m[1]!.split(' ').filter((w) => w && !w.startsWith('-')) : [];
}

/** .dockerignore: each pattern, in order, excludes (or with ! includes again)
 * the paths it matches and everything below them. */
export function contextFiles(root: string): string[] {
  const ignoreFile = path.join(root, '.dockerignore');
  const rules = fs
    .readFileSync(ignoreFile, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize(negate ? l.slice(1) : l).replace(/\/$/, '');
      return { negate, re: globRegExp(pattern) };
    });
  const excluded = (rel: string) => {
    const parts = rel.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let out = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) out = !r.negate;
    return out;
  };
  const files: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else if (!excluded(p)) files.push(p);
    }
  };
  walk('');
  return files.sort();
}

function expand(dir: string, pattern: string): string[] {
  const rel = pattern.replace(/^\/+/, '');
  if (!/[*?[]/.test(rel)) return fs.existsSync(path.join(dir, rel)) ? [rel] : [];
  const parent = path.posix.dirname(rel);
  const re = globRegExp(path.posix.basename(rel));
  const where = path.join(dir, parent);
  return fs.existsSync(where)
    ? fs
        .readdirSync(where)
        .filter((n) => re.test(n))
        .map((n) => path.posix.join(parent, n))
    : [];
}

/** ENTRYPOINT or CMD in exec form (a JSON array of strings): the words it
 * runs. Docker runs anything else through a shell, which no test expects. */
function execForm(step: JSONInstruction): string[] {
  const words = step.getJSONStrings().map((s) => s.getJSONValue());
  if (!words.length || !step.getClosingBracket()) throw new Error(`Dockerfile: ${step.getKeyword()} ${step.getArgumentsContent()} is not in exec form`);
  return words;
}

export interface BuiltStage {
  stage: Stage;
  /** the directory that stands for the stage's file system */
  root: string;
  workdir: string;
  env: Record<string, string>;
  apt: string[];
  entrypoint?: string[];
  cmd?: string[];
}

/** Plays a stage's steps: COPY from the context or an earlier stage, WORKDIR,
 * ENV, RUN (apt-get lines only recorded). Throws on a COPY source that is not
 * there, or a RUN that fails. */
export function buildStage(stage: Stage, root: string, context: string, earlier: Map<string, BuiltStage>, log: (s: string) => void = () => {}): BuiltStage {
  const built: BuiltStage = { stage, root, workdir: '/', env: {}, apt: [] };
  fs.mkdirSync(root, { recursive: true });
  const inStage = (p: string) => path.join(root, path.posix.resolve(built.workdir, p));
  for (const step of stage.steps) {
    const args = step.getArgumentsContent() ?? '';
    switch (step.getKeyword()) {
      case 'WORKDIR':
        built.workdir = path.posix.resolve(built.workdir, args);
        fs.mkdirSync(inStage('.'), { recursive: true });
        break;
      case 'ENV':
        for (const p of (step as Env).getProperties()) built.env[p.getName()] = p.getValue() ?? '';
        break;
      case 'COPY': {
        const flags = (step as Copy).getFlags().filter((f) => f.getName() !== 'from');
        if (flags.length) throw new Error(`COPY --${flags[0]!.getName()} is not played here`);
        const from = (step as Copy).getFromFlag()?.getValue() ?? undefined;
        const words = step.getExpandedArguments().map((a) => a.getValue());
        const dest = words.pop()!;
        const srcRoot = from === undefined ? context : earlier.get(from)?.root;
        if (!srcRoot) throw new Error(`COPY --from=${from}: no such stage`);
        const into = dest.endsWith('/') || words.length > 1;
        for (const pattern of words) {
          const matches = expand(srcRoot, pattern);
          if (!matches.length) throw new Error(`COPY ${from ? `--from=${from} ` : ''}${pattern}: not found`);
          for (const rel of matches) {
            const src = path.join(srcRoot, rel);
            const target = inStage(dest);
            // a directory's contents go to dest; a file goes into dest/ or becomes dest
            const to = fs.statSync(src).isDirectory() ? target : into ? path.join(target, path.basename(rel)) : target;
            fs.mkdirSync(fs.statSync(src).isDirectory() ? to : path.dirname(to), { recursive: true });
            fs.cpSync(src, to, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
          }
        }
        break;
      }
      case 'RUN':
        if (/apt-get/.test(args)) {
          built.apt.push(...aptPackages(args));
          break;
        }
        log(`${stage.name}: RUN ${args}`);
        execFileSync('bash', ['-c', args], { cwd: inStage('.'), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...built.env } });
        break;
      case 'ENTRYPOINT':
        built.entrypoint = execForm(step as JSONInstruction);
        break;
      case 'CMD':
        built.cmd = execForm(step as JSONInstruction);
        break;
      case 'EXPOSE':
      case 'ARG':
      case 'LABEL':
        break;
      default:
        throw new Error(`Dockerfile: ${step.getKeyword()} is not played here`);
    }
  }
  return built;
}
