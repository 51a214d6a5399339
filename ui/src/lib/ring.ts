// A bounded list of lines: the log pages keep at most `cap` lines, dropping the oldest.

export class LineRing {
  lines: string[] = [];
  dropped = 0;
  private partial = '';

  constructor(readonly cap = 5000) {}

  /** Append raw text (may hold several lines, or part of one). */
  pushText(text: string): void {
    const parts = (this.partial + text).split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    this.pushLines(parts);
  }

  pushLines(lines: string[]): void {
    this.lines.push(...lines);
    const over = this.lines.length - this.cap;
    if (over > 0) {
      this.lines.splice(0, over);
      this.dropped += over;
    }
  }

  clear(): void {
    this.lines = [];
    this.partial = '';
    this.dropped = 0;
  }
}
