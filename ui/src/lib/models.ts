import type { ModelInfo } from './types';

/** Models shown on the Models page: search over id, name, description, group and aliases. */
export function filterModels(models: ModelInfo[], q: string, unlisted: boolean): ModelInfo[] {
  const needle = q.trim().toLowerCase();
  return models
    .filter((m) => unlisted || !m.unlisted)
    .filter(
      (m) =>
        !needle ||
        [m.id, m.name ?? '', m.description ?? '', m.group ?? '', ...(m.aliases ?? [])].some((s) =>
          s.toLowerCase().includes(needle),
        ),
    )
    .sort((a, b) => a.id.localeCompare(b.id));
}
