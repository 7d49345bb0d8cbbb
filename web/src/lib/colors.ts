const PALETTE = ["#c0392b", "#2471a3", "#1a7340", "#8a5a00", "#7d3c98", "#117a65", "#a04000", "#2e4053"];

/** A stable colour per user, dark enough for white text on it. */
export function colorFor(userId: number): string {
  return PALETTE[Math.abs(userId) % PALETTE.length] ?? "#2e4053";
}
