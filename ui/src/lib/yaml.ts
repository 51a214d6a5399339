// The Config page's view of a YAML file: light highlighting (keys, comments, list dashes) and
// the rejected reload's `file:line:col: message` errors placed at their lines.

export interface Piece {
  text: string;
  cls: '' | 'key' | 'comment' | 'dash' | 'mask';
}

export interface LineError {
  line: number;
  col: number;
  message: string;
}

const KEY = /^(\s*)(-\s+)?((?:"[^"]*"|'[^']*'|[^\s#:"'][^#:]*?)):(?=\s|$)/;
const MASK = /\*\*\*/g;

/** One line as highlighted pieces (the text of the pieces joined is the line). */
export function yamlLine(line: string): Piece[] {
  const out: Piece[] = [];
  let rest = line;
  const key = KEY.exec(rest);
  if (key) {
    if (key[1]) out.push({ text: key[1], cls: '' });
    if (key[2]) out.push({ text: key[2], cls: 'dash' });
    out.push({ text: key[3], cls: 'key' });
    out.push({ text: ':', cls: '' });
    rest = line.slice(key[0].length);
  } else {
    const dash = /^(\s*)(-\s+|-$)/.exec(rest);
    if (dash) {
      if (dash[1]) out.push({ text: dash[1], cls: '' });
      out.push({ text: dash[2], cls: 'dash' });
      rest = rest.slice(dash[0].length);
    }
  }
  const hash = commentStart(rest);
  const body = hash < 0 ? rest : rest.slice(0, hash);
  let last = 0;
  for (const m of body.matchAll(MASK)) {
    if (m.index > last) out.push({ text: body.slice(last, m.index), cls: '' });
    out.push({ text: m[0], cls: 'mask' });
    last = m.index + m[0].length;
  }
  if (last < body.length) out.push({ text: body.slice(last), cls: '' });
  if (hash >= 0) out.push({ text: rest.slice(hash), cls: 'comment' });
  return out;
}

/** Where a comment starts in ``text`` (a `#` at the start or after a blank, outside quotes), or -1. */
function commentStart(text: string): number {
  let quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s:[{,]/.test(text[i - 1])) quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      return i;
    }
  }
  return -1;
}

/** `file:line:col: message` errors by file; those without a position go under ''. */
export function errorsByFile(errors: string[]): Map<string, LineError[]> {
  const out = new Map<string, LineError[]>();
  for (const e of errors) {
    const m = /^(.*?):(\d+):(\d+): ([\s\S]*)$/.exec(e);
    const file = m ? m[1] : '';
    const list = out.get(file) ?? [];
    list.push(m ? { line: Number(m[2]), col: Number(m[3]), message: m[4] } : { line: 0, col: 0, message: e });
    out.set(file, list);
  }
  return out;
}
