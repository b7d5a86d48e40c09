// Small bar charts as inline SVG, drawn from the wallboard's figures (no chart library).
const NS = "http://www.w3.org/2000/svg";

function node(name, attrs = {}, text = null) {
  const el = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = text;
  return el;
}

/**
 * Draw bars into `container`, replacing what is there.
 * items: [{label, value (number or null), text (shown above the bar)}]
 * options: {max, goal (a value drawn as a dashed line), below (value -> true to mark a bar),
 *           title (the accessible name), summary (the accessible description)}
 */
export function barChart(container, items, options = {}) {
  const width = 640;
  const height = 220;
  const left = 36;
  const bottom = 24;
  const top = 16;
  const plotH = height - bottom - top;
  const values = items.map((i) => i.value ?? 0);
  const max = options.max ?? Math.max(1, ...values);
  const step = (width - left - 8) / Math.max(1, items.length);
  const y = (v) => top + plotH - (v / max) * plotH;
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", focusable: "false" });
  svg.append(node("title", {}, options.title || ""));
  if (options.summary) svg.append(node("desc", {}, options.summary));
  svg.append(node("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 4, y2: top + plotH }));
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    svg.append(node("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" },
      options.tick ? options.tick(v) : String(Math.round(v))));
  }
  items.forEach((item, i) => {
    const x = left + i * step;
    const v = item.value;
    if (v !== null && v !== undefined) {
      const barH = Math.max(0, (v / max) * plotH);
      const cls = options.below && options.below(v) ? "bar below" : "bar";
      svg.append(node("rect", { class: cls, x: x + step * 0.15, y: top + plotH - barH,
        width: step * 0.7, height: barH }));
      if (item.text) {
        svg.append(node("text", { x: x + step / 2, y: top + plotH - barH - 3, "text-anchor": "middle" },
          item.text));
      }
    }
    svg.append(node("text", { x: x + step / 2, y: height - 8, "text-anchor": "middle" }, item.label));
  });
  if (options.goal !== undefined && options.goal !== null) {
    svg.append(node("line", { class: "goal", x1: left, x2: width - 4, y1: y(options.goal), y2: y(options.goal) }));
  }
  container.replaceChildren(svg);
}
