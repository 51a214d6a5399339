import { describe, expect, it } from 'vitest';
import { errorsByFile, yamlLine } from '../src/lib/yaml';

describe('yamlLine', () => {
  it('keeps the text and marks keys, dashes, masks and comments', () => {
    const lines = [
      'models:',
      '  echo-a:   # the first',
      '    cmd: ${python} -m swapd.echo --port ${PORT}',
      '      - "HF_TOKEN=***"',
      "    description: 'a # not a comment'",
      '  - plain item',
      '# a comment',
      '',
    ];
    for (const line of lines) expect(yamlLine(line).map((p) => p.text).join('')).toBe(line);
    expect(yamlLine('  echo-a:   # the first')).toEqual([
      { text: '  ', cls: '' },
      { text: 'echo-a', cls: 'key' },
      { text: ':', cls: '' },
      { text: '   ', cls: '' },
      { text: '# the first', cls: 'comment' },
    ]);
    expect(yamlLine('      - "HF_TOKEN=***"').filter((p) => p.cls === 'mask')).toHaveLength(1);
    expect(yamlLine("    description: 'a # not a comment'").some((p) => p.cls === 'comment')).toBe(false);
  });
});

describe('errorsByFile', () => {
  it('places file:line:col errors and keeps the rest apart', () => {
    const byFile = errorsByFile(['/etc/swapd.yaml:12:15: models.m.unlisted: expected true or false', 'reload is not available']);
    expect(byFile.get('/etc/swapd.yaml')).toEqual([{ line: 12, col: 15, message: 'models.m.unlisted: expected true or false' }]);
    expect(byFile.get('')).toEqual([{ line: 0, col: 0, message: 'reload is not available' }]);
  });
});
