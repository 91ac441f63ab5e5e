// Small per-minute charts drawn as SVG from numbers only (no text from the API goes into them).

/** Counts of ``minutes`` (ISO minute → n) folded into ``bins`` equal slices of [from, to). */
export function binCounts(points: { minute: string; count: number }[], from: number, to: number, bins: number): number[] {
  const out = new Array<number>(bins).fill(0);
  const span = Math.max(1, to - from);
  for (const p of points) {
    const t = Date.parse(p.minute);
    if (Number.isNaN(t) || t < from - 60_000 || t >= to) continue;
    const i = Math.min(bins - 1, Math.max(0, Math.floor(((t - from) / span) * bins)));
    out[i] += p.count;
  }
  return out;
}

/** A tiny bar sparkline (the issues list's count column). */
export function SparkBars(props: { values: number[]; label: string; testid?: string }) {
  const { values } = props;
  const max = Math.max(...values, 1);
  const w = 100 / Math.max(1, values.length);
  return (
    <svg
      class="sparkbars"
      viewBox="0 0 100 20"
      preserveAspectRatio="none"
      role="img"
      aria-label={props.label}
      data-testid={props.testid}
      data-values={values.join(",")}
    >
      {values.map((v, i) =>
        v > 0 ? <rect key={i} x={i * w + w * 0.1} width={w * 0.8} y={20 - (v / max) * 19} height={(v / max) * 19} /> : null,
      )}
    </svg>
  );
}

/** A bar chart with its title, the largest value and the window's ends as captions. */
export function BarChart(props: {
  title: string;
  values: (number | null)[];
  from: string;
  to: string;
  unit?: string;
  testid?: string;
  tone?: "bad" | "warn" | "";
}) {
  const values = props.values.map((v) => v ?? 0);
  const max = Math.max(...values, 0);
  const scale = max || 1;
  const w = 300 / Math.max(1, values.length);
  const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
  return (
    <figure class={`barchart ${props.tone ?? ""}`} data-testid={props.testid} data-values={values.join(",")}>
      <figcaption>
        <span>{props.title}</span>
        <span class="muted">
          max {fmt(max)}
          {props.unit ?? ""}
        </span>
      </figcaption>
      <svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label={`${props.title} per minute`}>
        <line x1="0" y1="59.5" x2="300" y2="59.5" class="axis" />
        {values.map((v, i) =>
          v > 0 ? <rect key={i} x={i * w + w * 0.1} width={Math.max(0.5, w * 0.8)} y={60 - (v / scale) * 58} height={(v / scale) * 58} /> : null,
        )}
      </svg>
      <div class="axis-labels muted">
        <span>{props.from}</span>
        <span>{props.to}</span>
      </div>
    </figure>
  );
}
