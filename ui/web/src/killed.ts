// Killed invocations (collector/killed.py): an invocation that never ended is marked
// hoptrace.faas.killed = timeout | out_of_memory | crash; map nodes carry their counts as `killed`.
export const KILLED_LABELS: Record<string, string> = {
  timeout: "timed out",
  out_of_memory: "out of memory",
  crash: "crashed",
};

/** The class of a killed span ("timeout", …), or null for any other span. */
export function killedClass(attributes: Record<string, unknown>): string | null {
  const value = attributes["hoptrace.faas.killed"];
  return typeof value === "string" && value in KILLED_LABELS ? value : null;
}

/** "killed: 2 out of memory, 1 timed out" from a node's `killed` counts; "" when none. */
export function killedSummary(killed: unknown): string {
  if (!killed || typeof killed !== "object") return "";
  const parts = Object.entries(killed as Record<string, unknown>)
    .filter(([cls, n]) => cls in KILLED_LABELS && typeof n === "number" && n > 0)
    .sort((a, b) => Number(b[1]) - Number(a[1]))
    .map(([cls, n]) => `${n} ${KILLED_LABELS[cls]}`);
  return parts.length ? `killed: ${parts.join(", ")}` : "";
}
