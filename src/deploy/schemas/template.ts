/**
 * Helm templates as YAML documents: the static structure of each template is a plain object
 * written out by the `yaml` library, and only Go-template expressions are spliced in, in value
 * positions (a scalar, a `toYaml … | nindent n` block, or one key, scalar or block, kept only when a
 * condition holds). Markers stand in for them while `yaml` writes the document, so the library decides all
 * quoting and indentation; the markers are then replaced line by line. Deterministic: the same
 * object gives the same text. Owned by src/deploy/helm.ts (the only user).
 */
import { stringify } from 'yaml';

type Splice =
  | { kind: 'value'; expr: string }
  | { kind: 'block'; expr: string }
  | { kind: 'when'; cond: string; expr: string }
  | { kind: 'whenBlock'; cond: string; expr: string };

const MARKER = /NIMIFY_SPLICE_(\d+)_/;

export class TemplateWriter {
  readonly #splices: Splice[] = [];

  #mark(s: Splice): string {
    this.#splices.push(s);
    return `NIMIFY_SPLICE_${this.#splices.length - 1}_`;
  }

  /** A scalar value rendered by Helm: `key: {{ expr }}` (the expression does its own quoting). */
  value(expr: string): string {
    return this.#mark({ kind: 'value', expr });
  }

  /** A block value rendered by Helm as YAML: `key:{{- expr | nindent <key indent + 2> }}`. */
  block(expr: string): string {
    return this.#mark({ kind: 'block', expr });
  }

  /** A key present only when `cond` holds: `{{- if cond }}` / `key: {{ expr }}` / `{{- end }}`. */
  when(cond: string, expr: string): string {
    return this.#mark({ kind: 'when', cond, expr });
  }

  /** A key whose value is a YAML block, present only when `cond` holds: `{{- if cond }}` / `key:{{- expr | nindent n }}` / `{{- end }}`. */
  whenBlock(cond: string, expr: string): string {
    return this.#mark({ kind: 'whenBlock', cond, expr });
  }

  /** The document as template text; `gate` wraps the whole document in `{{- if gate }}…{{- end }}`. */
  render(doc: unknown, gate?: string): string {
    const text = stringify(doc, { lineWidth: 0 });
    const lines = text.split('\n').map((line) => {
      const m = MARKER.exec(line);
      if (m === null) return line;
      const splice = this.#splices[Number(m[1])]!;
      const keyed = /^(\s*)(- )?([^\s:][^:]*): NIMIFY_SPLICE_\d+_$/.exec(line);
      if (splice.kind === 'value') return line.replace(MARKER, `{{ ${splice.expr} }}`);
      if (keyed === null) throw new Error(`template: a ${splice.kind} splice must be a mapping value, got ${JSON.stringify(line)}`);
      const [, indent, dash = '', key] = keyed;
      const keyIndent = indent!.length + dash.length;
      if (splice.kind === 'block') return `${indent}${dash}${key}:{{- ${splice.expr} | nindent ${keyIndent + 2} }}`;
      if (dash !== '') throw new Error(`template: a conditional key cannot start a sequence item (${key})`);
      const entry = splice.kind === 'when' ? `${indent}${key}: {{ ${splice.expr} }}` : `${indent}${key}:{{- ${splice.expr} | nindent ${keyIndent + 2} }}`;
      return [`${indent}{{- if ${splice.cond} }}`, entry, `${indent}{{- end }}`].join('\n');
    });
    const body = lines.join('\n');
    return gate === undefined ? body : `{{- if ${gate} }}\n${body}{{- end }}\n`;
  }
}
