// VM definitions as text: JSON or YAML. The CLI (define, edit) and the API (POST /vms, PUT /vms/{name} with
// Content-Type application/yaml) parse through here, so both refuse the same syntax with the same message, naming the
// line and column; what the text holds is then validated by the one JSON schema (src/manager/schema.ts).
//
// YAML is read as YAML 1.2 with the core schema (eemeli/yaml's default): `no`, `yes`, `on` stay strings (YAML 1.1's
// booleans are a classic trap), dates stay strings, duplicate keys are errors, a stream of several documents is an
// error, an unknown tag is an error (the library only warns), and aliases are capped (100 expanded nodes) so a small
// body cannot expand into a huge one ("billion laughs").
//
// A definition submitted as YAML is kept as written (DIR/definition-sources/NAME.json: its text and a hash of the
// stored definition it produced) so `ringzero edit` opens the user's own file, comments included, for as long as the
// definition has not been changed another way (a clone's MACs, `set --config`, a disk switch): then the YAML is
// rendered from the definition instead.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { writeFileAtomic } from './store.ts';

export type DefinitionFormat = 'json' | 'yaml';

/** The media types read as YAML (application/yaml is RFC 9512's; the others are in common use). */
export const YAML_MEDIA_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'] as const;
export const YAML_CONTENT_TYPE = 'application/yaml; charset=utf-8';
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Expanded alias nodes allowed in one document (the library's default, stated here because it is a safety limit). */
const MAX_ALIAS_COUNT = 100;

export class DefinitionSyntaxError extends Error {
  constructor(readonly format: DefinitionFormat, readonly reason: string, readonly line?: number, readonly column?: number) {
    super(`${format === 'yaml' ? 'YAML' : 'JSON'} syntax error${line !== undefined ? ` at line ${line}, column ${column}` : ''}: ${reason}`);
  }
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const line = before.split('\n').length;
  return { line, column: offset - (before.lastIndexOf('\n') + 1) + 1 };
}

export function parseYaml(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  // An unresolved tag is only a warning for the library; here it is an error like any other.
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    // The library's message is "<reason> at line L, column C:\n\n<excerpt>"; keep the reason, state the place once.
    const reason = problem.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    const at = problem.linePos?.[0];
    throw new DefinitionSyntaxError('yaml', reason, at?.line, at?.col);
  }
  if (doc.contents === null) throw new DefinitionSyntaxError('yaml', 'the document is empty');
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    // Excessive alias expansion, a circular alias.
    throw new DefinitionSyntaxError('yaml', (error as Error).message);
  }
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const reason = (error as Error).message;
    const position = /at position (\d+)/.exec(reason);
    if (position) {
      const { line, column } = lineColumn(text, Number(position[1]));
      throw new DefinitionSyntaxError('json', reason.replace(/ in JSON at position \d+.*$/, ''), line, column);
    }
    throw new DefinitionSyntaxError('json', reason);
  }
}

export function parseDefinitionText(text: string, format: DefinitionFormat): unknown {
  return format === 'yaml' ? parseYaml(text) : parseJson(text);
}

/**
 * The format of a definition file: by its extension (.json, .yaml, .yml), else by its content (JSON starts with `{`
 * once blank space is skipped; anything else is read as YAML).
 */
export function formatOfFile(file: string, text: string): DefinitionFormat {
  const extension = path.extname(file).toLowerCase();
  if (extension === '.json') return 'json';
  if (extension === '.yaml' || extension === '.yml') return 'yaml';
  return /^\s*\{/.test(text) ? 'json' : 'yaml';
}

/** The format a request's Content-Type names (undefined: neither). */
export function formatOfContentType(contentType: string | undefined): DefinitionFormat | undefined {
  const media = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (media === 'application/json') return 'json';
  if ((YAML_MEDIA_TYPES as readonly string[]).includes(media)) return 'yaml';
  return undefined;
}

export function renderDefinition(definition: unknown, format: DefinitionFormat): string {
  return format === 'yaml' ? stringify(definition, { version: '1.2' }) : `${JSON.stringify(definition, null, 2)}\n`;
}

/** A hash of a definition's content that does not depend on key order. */
export function definitionHash(definition: unknown): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]));
  };
  return crypto.createHash('sha256').update(JSON.stringify(canonical(definition))).digest('hex');
}

interface SourceRecord {
  format: 'yaml';
  /** definitionHash of the stored definition the text produced. */
  sha256: string;
  text: string;
}

/** DIR/definition-sources: the YAML text of definitions submitted as YAML. */
export class DefinitionSources {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'definition-sources');
  }

  private file(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  /** Remember how the VM's current definition was written: YAML keeps its text; JSON drops any YAML kept before. */
  record(name: string, format: DefinitionFormat, text: string, definition: unknown): void {
    if (format === 'json') {
      this.forget(name);
      return;
    }
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(this.file(name), JSON.stringify({ format, sha256: definitionHash(definition), text } satisfies SourceRecord));
  }

  forget(name: string): void {
    fs.rmSync(this.file(name), { force: true });
  }

  /**
   * The definition as text in `format` (default: the format it was last written in). YAML is the user's own text while
   * it still describes the stored definition, else rendered from it.
   */
  text(name: string, definition: unknown, format?: DefinitionFormat): { format: DefinitionFormat; text: string } {
    let record: SourceRecord | undefined;
    try {
      record = JSON.parse(fs.readFileSync(this.file(name), 'utf8')) as SourceRecord;
    } catch {
      record = undefined;
    }
    const wanted = format ?? (record ? 'yaml' : 'json');
    if (wanted === 'yaml' && record && record.sha256 === definitionHash(definition) && typeof record.text === 'string') {
      return { format: 'yaml', text: record.text };
    }
    return { format: wanted, text: renderDefinition(definition, wanted) };
  }
}
