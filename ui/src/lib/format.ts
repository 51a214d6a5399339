export function duration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  const parts = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`;
  if (m < 60) return parts(m, 'm', Math.floor(seconds % 60), 's');
  const h = Math.floor(m / 60);
  return h < 48 ? parts(h, 'h', m % 60, 'm') : parts(Math.floor(h / 24), 'd', h % 24, 'h');
}

/** A model's idle TTL and, while it counts down, what is left: `ttl 2m · 1m 52s left`. */
export function ttlText(ttl: number, left: number | null): string {
  return left == null ? `ttl ${duration(ttl)}` : `ttl ${duration(ttl)} · ${duration(left)} left`;
}

export function num(n: number | null | undefined, digits = 0): string {
  if (n == null || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function clock(t: number | string | null | undefined): string {
  if (t == null) return '—';
  const d = typeof t === 'number' ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleTimeString('en-GB');
}
