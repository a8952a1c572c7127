// The docs hold up: every relative link in the README and docs/ resolves inside the repo (its
// #anchor too), and the Grafana dashboard only queries series Fledge exports.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fledge-process.ts';

const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8');
const MARKDOWN = [
  'README.md',
  ...readdirSync(path.join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (m)
      out.add(
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      );
  }
  return out;
}

function links(markdown: string): string[] {
  const stripped = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, (code) => (code.includes('](') ? '' : code));
  return [...stripped.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((href) => !/^[a-z]+:/i.test(href));
}

describe('docs', () => {
  it.each(MARKDOWN)('every relative link in %s resolves inside the repo', (file) => {
    const broken: string[] = [];
    for (const href of links(read(file))) {
      const [target = '', anchor] = href.split('#');
      const resolved = target === '' ? file : path.normalize(path.join(path.dirname(file), target));
      if (resolved.startsWith('..') || !existsSync(path.join(REPO_ROOT, resolved))) {
        broken.push(`${href} (no ${resolved} in the repo)`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && !anchors(read(resolved)).has(anchor)) broken.push(`${href} (no heading #${anchor})`);
    }
    expect(broken).toEqual([]);
  });

  it('the README links the CLI and operations docs, and shows deploy watch', () => {
    const readme = read('README.md');
    expect(links(readme)).toEqual(expect.arrayContaining(['docs/cli.md', 'docs/operations.md']));
    expect(readme).toMatch(/fledge deploy watch hello v2/);
  });

  it('the Grafana dashboard is valid JSON and queries only series /metrics carries', () => {
    const dashboard = JSON.parse(read('docs/grafana-dashboard.json')) as { panels: { targets: { expr: string }[] }[] };
    const exported = new Set(
      ['src/metrics/index.ts', 'src/metrics/lb.ts'].flatMap((f) => [...read(f).matchAll(/['`](fledge_[a-z_]+)['`$ ]/g)].map((m) => m[1]!)),
    );
    const base = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
    const used = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\b(fledge_[a-z_]+)/g)].map((m) => m[1]!)));
    expect(used.length).toBeGreaterThan(10);
    expect(used.filter((name) => !exported.has(name) && !exported.has(base(name)))).toEqual([]);
  });
});
