import { describe, expect, it } from 'vitest';
import { ATTRIBUTES, TAGS, markdown } from '../src/lib/markdown';

/** Parse the HTML as the browser would and list what is in it. */
function dom(html: string): HTMLElement {
  const div = document.createElement('div');
  div.innerHTML = html;
  return div;
}

function assertSafe(html: string): void {
  const root = dom(html);
  for (const el of root.querySelectorAll('*')) {
    expect(TAGS, html).toContain(el.tagName.toLowerCase());
    for (const attr of el.attributes) {
      expect(ATTRIBUTES, html).toContain(attr.name);
      if (attr.name === 'href') expect(attr.value, html).toMatch(/^(https?:\/\/|mailto:)/i);
      if (attr.name === 'style') expect(attr.value, html).toMatch(/^text-align:(left|right|center)$/);
    }
  }
}

describe('markdown', () => {
  it('renders code blocks with their language, escaped', () => {
    const html = markdown('Here:\n\n```python\nif a < b and c > d:\n    print("<b>")\n```\ndone');
    const root = dom(html);
    const code = root.querySelector('pre.md-code code')!;
    expect(code.textContent).toBe('if a < b and c > d:\n    print("<b>")');
    expect(root.querySelector('pre')!.dataset.lang).toBe('python');
    expect(root.querySelector('b')).toBeNull();
    expect([...root.querySelectorAll('p')].map((p) => p.textContent)).toEqual(['Here:', 'done']);
  });

  it('runs an unclosed fence to the end (a reply still streaming)', () => {
    const root = dom(markdown('```js\nconst x = 1;\nconst y'));
    expect(root.querySelector('code')!.textContent).toBe('const x = 1;\nconst y');
  });

  it('renders headings, lists, quotes, rules, tables and inline markup', () => {
    const src = [
      '# Title',
      'Some **bold**, *italic*, ~~gone~~ and `x < y` code;',
      'a second line',
      '',
      '- one',
      '- two with [a link](https://example.com/a_b_c)',
      '  - nested',
      '',
      '3. three',
      '4. four',
      '',
      '> quoted *text*',
      '',
      '---',
      '| a | b |',
      '|---|--:|',
      '| 1 | 2 |',
    ].join('\n');
    const root = dom(markdown(src));
    expect(root.querySelector('h1')!.textContent).toBe('Title');
    expect(root.querySelector('strong')!.textContent).toBe('bold');
    expect(root.querySelector('em')!.textContent).toBe('italic');
    expect(root.querySelector('del')!.textContent).toBe('gone');
    expect(root.querySelector('p code')!.textContent).toBe('x < y');
    expect(root.querySelector('p')!.innerHTML).toContain('<br>');
    expect(root.querySelectorAll('ul > li').length).toBe(3);
    expect(root.querySelector('ul ul li')!.textContent).toBe('nested');
    const link = root.querySelector('a')!;
    expect(link.getAttribute('href')).toBe('https://example.com/a_b_c');
    expect(link.getAttribute('rel')).toContain('noopener');
    expect(root.querySelector('ol')!.getAttribute('start')).toBe('3');
    expect(root.querySelector('blockquote em')!.textContent).toBe('text');
    expect(root.querySelector('hr')).not.toBeNull();
    expect([...root.querySelectorAll('td')].map((td) => td.textContent)).toEqual(['1', '2']);
    expect(root.querySelectorAll('td')[1].getAttribute('style')).toBe('text-align:right');
    assertSafe(markdown(src));
  });

  it('never lets model output inject HTML, script or handlers', () => {
    const attacks = [
      '<script>alert(1)</script>',
      '<img src=x onerror=alert(1)>',
      '[click](javascript:alert(1))',
      '[click](JaVaScRiPt:alert(1))',
      '[x](https://a.example/"onmouseover="alert(1))',
      '[x](data:text/html,<script>alert(1)</script>)',
      '`</code><script>alert(1)</script>`',
      '```"><img src=x onerror=alert(1)>\ncode\n```',
      '**<iframe src=https://evil>**',
      '| <b>h</b> | x |\n|---|---|\n| <svg onload=alert(1)> | y |',
      'https://ok.example/?q="><script>alert(1)</script>',
      '> <a href="javascript:alert(1)">q</a>',
      '- <style>body{display:none}</style>',
      '\u0000<script>0\u0000',
    ];
    for (const attack of attacks) {
      const html = markdown(attack);
      assertSafe(html);
      const root = dom(html);
      expect(root.querySelector('script, img, iframe, svg, style'), attack).toBeNull();
    }
  });

  it('stays safe on random mixes of markup and HTML', () => {
    const parts = ['<', '>', '"', "'", '&', '`', '```', '*', '**', '_', '[a](', 'https://x.y/', ')', ']', '|', '\n', '- ',
      '> ', '# ', 'javascript:', 'onerror=', '<img src=x ', '<script>', '\u0000', '1. ', '---', ' '];
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 2000; round++) {
      const text = Array.from({ length: 1 + rand(30) }, () => parts[rand(parts.length)]).join('');
      assertSafe(markdown(text));
    }
  });
});
