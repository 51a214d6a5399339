// ANSI SGR escape sequences → styled segments (colours of the 16-colour palette, bold, dim).

export interface Segment {
  text: string;
  cls: string; // space-separated classes: "fg-1 bold"
}

const SGR = /\x1b\[([0-9;]*)m/g;
const OTHER = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;

export function ansiSegments(line: string): Segment[] {
  const out: Segment[] = [];
  let fg = -1;
  let bg = -1;
  let bold = false;
  let dim = false;
  let last = 0;
  const cls = () =>
    [fg >= 0 ? `fg-${fg}` : '', bg >= 0 ? `bg-${bg}` : '', bold ? 'bold' : '', dim ? 'dim' : '']
      .filter(Boolean)
      .join(' ');
  const emit = (text: string) => {
    text = text.replace(OTHER, '');
    if (text) out.push({ text, cls: cls() });
  };
  SGR.lastIndex = 0;
  for (let m = SGR.exec(line); m; m = SGR.exec(line)) {
    emit(line.slice(last, m.index));
    last = m.index + m[0].length;
    const codes = m[1] === '' ? [0] : m[1].split(';').map(Number);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) (fg = -1), (bg = -1), (bold = false), (dim = false);
      else if (c === 1) bold = true;
      else if (c === 2) dim = true;
      else if (c === 22) (bold = false), (dim = false);
      else if (c >= 30 && c <= 37) fg = c - 30;
      else if (c >= 90 && c <= 97) fg = c - 90 + 8;
      else if (c === 39) fg = -1;
      else if (c >= 40 && c <= 47) bg = c - 40;
      else if (c >= 100 && c <= 107) bg = c - 100 + 8;
      else if (c === 49) bg = -1;
      else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : 4; // 256/rgb: skip
    }
  }
  emit(line.slice(last));
  return out;
}

export function stripAnsi(line: string): string {
  return line.replace(SGR, '').replace(OTHER, '');
}
