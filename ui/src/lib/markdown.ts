// A small Markdown renderer for model replies in the Playground: fenced code blocks, headings,
// lists, block quotes, tables, rules, paragraphs with line breaks; inline code, bold, italic,
// strikethrough and links. Safe by construction: every piece of the input is HTML-escaped, only
// the tags built here are emitted, and a link's href must be http(s) or mailto.

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** The tags markdown() may emit, and the only attributes it sets (tests check this). */
export const TAGS = ['p', 'br', 'pre', 'code', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote',
  'hr', 'strong', 'em', 'del', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'div'];
export const ATTRIBUTES = ['href', 'target', 'rel', 'class', 'start', 'data-lang', 'style'];

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const MAX_DEPTH = 6; // quotes and lists nested deeper are shown as text

/** ``source`` as HTML (a string for {@html}); unclosed code fences run to the end, as they do
 * while a reply streams in. */
export function markdown(source: string, depth = 0): string {
  const lines = source.replace(/\r\n?/g, '\n').replace(/\u0000/g, '').split('\n');
  const out: string[] = [];
  let i = 0;
  const startsBlock = (line: string) =>
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body: string[] = [];
      const close = new RegExp(`^ {0,3}${fence[1][0] === '`' ? '`' : '~'}{${fence[1].length},}\\s*$`);
      for (i++; i < lines.length && !close.test(lines[i]); i++) body.push(lines[i]);
      i++;
      const lang = fence[2] ? ` data-lang="${escapeHtml(fence[2])}"` : '';
      out.push(`<pre class="md-code"${lang}><code>${escapeHtml(body.join('\n'))}</code></pre>`);
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.push('<hr>');
      i++;
      continue;
    }
    if (QUOTE.test(line) && depth < MAX_DEPTH) {
      const inner: string[] = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i++) inner.push(lines[i].replace(QUOTE, ''));
      out.push(`<blockquote>${markdown(inner.join('\n'), depth + 1)}</blockquote>`);
      continue;
    }
    const item = ITEM.exec(line);
    if (item && depth < MAX_DEPTH) {
      i = list(lines, i, depth, out);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = table(lines, i, out);
      continue;
    }
    const para: string[] = [line];
    for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i++) para.push(lines[i]);
    out.push(`<p>${para.map((l) => inline(l.trim())).join('<br>')}</p>`);
  }
  return out.join('');
}

/** A list starting at lines[i]: its items (and their indented continuation lines); returns the
 * index after it. */
function list(lines: string[], i: number, depth: number, out: string[]): number {
  const first = ITEM.exec(lines[i])!;
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items: string[][] = [];
  for (; i < lines.length; i++) {
    const line = lines[i];
    const item = ITEM.exec(line);
    if (item && item[1].length <= indent && /\d/.test(item[2]) === ordered) items.push([item[3]]);
    else if (item && item[1].length <= indent) break; // the other kind of list starts
    else if (line.trim() && (/^\s/.test(line) || !startsNew(line))) items[items.length - 1].push(line.slice(Math.min(indent + 2, line.search(/\S/))));
    else if (!line.trim() && i + 1 < lines.length && /^\s+\S/.test(lines[i + 1])) items[items.length - 1].push('');
    else break;
  }
  const tag = ordered ? 'ol' : 'ul';
  const start = ordered && parseInt(first[2], 10) !== 1 ? ` start="${parseInt(first[2], 10)}"` : '';
  const body = items.map((it) => {
    const html = it.length === 1 ? inline(it[0]) : markdown(it.join('\n'), depth + 1);
    return `<li>${html.startsWith('<p>') && !html.includes('</p><') ? html.slice(3, -4) : html}</li>`;
  });
  out.push(`<${tag}${start}>${body.join('')}</${tag}>`);
  return i;
}

function startsNew(line: string): boolean {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line);
}

function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

function table(lines: string[], i: number, out: string[]): number {
  const head = cells(lines[i]);
  const align = cells(lines[i + 1]).map((c) => (c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : ''));
  const style = (k: number) => (align[k] ? ` style="text-align:${align[k]}"` : '');
  const rows: string[] = [];
  for (i += 2; i < lines.length && lines[i].includes('|') && lines[i].trim(); i++) {
    rows.push(`<tr>${cells(lines[i]).map((c, k) => `<td${style(k)}>${inline(c)}</td>`).join('')}</tr>`);
  }
  const th = head.map((c, k) => `<th${style(k)}>${inline(c)}</th>`).join('');
  out.push(`<div class="md-table"><table><thead><tr>${th}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`);
  return i;
}

/** Inline markup of one line: code spans and links are set aside first (as placeholders), so
 * emphasis never reaches into them. */
export function inline(text: string): string {
  const held: string[] = [];
  const hold = (html: string) => `\u0000${held.push(html) - 1}\u0000`;
  let s = text.replace(/\u0000/g, '').replace(/(`+)(.+?)\1(?!`)/g, (_, _ticks, code: string) => hold(`<code>${escapeHtml(code)}</code>`));
  s = escapeHtml(s);
  s = s.replace(/\[([^\]]+)\]\(([^()\s]+)\)/g, (all, label: string, url: string) =>
    SAFE_URL.test(url) ? hold(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`) : all,
  );
  s = s.replace(/(^|[\s(])(https?:\/\/[^\s<]*[^\s<.,;:!?)'"&])/g, (_, pre: string, url: string) =>
    pre + hold(`<a href="${url}" target="_blank" rel="noopener noreferrer">${url}</a>`),
  );
  s = emphasis(s);
  const PLACEHOLDER = /\u0000(\d+)\u0000/g;
  while (/\u0000\d+\u0000/.test(s)) s = s.replace(PLACEHOLDER, (_, n: string) => held[Number(n)]); // links hold code spans
  return s;
}

function emphasis(s: string): string {
  return s
    .replace(/\*\*(?=\S)(.+?)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)(.+?)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/~~(?=\S)(.+?)~~/g, '<del>$1</del>')
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?![*\w])/g, '$1<em>$2</em>')
    .replace(/(^|[^_\w])_(?=[^\s_])([^_]*?[^\s_])_(?![_\w])/g, '$1<em>$2</em>');
}
