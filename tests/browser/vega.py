"""Reading a Vega-Lite chart (``st.vega_lite_chart``) as Chromium drew it: the Latency page's percentile chart.

Streamlit keeps each chart's Vega ``View`` in a React ref; :data:`VEGA_JS` finds it from the
chart's element (React's fiber of that element, up to the component holding the ref) and reads
the **scenegraph**: every drawn item of each named mark with its pixel position and datum. A pixel
x is turned back into a time with the chart's own x scale (``scale.invert``) and then into the
wall-clock time the axis shows at that pixel: on a ``time`` scale (Vega draws instants in the
browser's zone) from the browser's local clock fields, on a ``utc`` scale from the UTC fields. So,
as for Plotly's ``calcdata``, what is checked is where things are drawn, not what was sent.

:func:`vega_figures` gives each chart in the shape the clock tests use for Plotly figures:
``title`` (x-axis title), ``range`` (the axis's ends), ``traces`` (one per percentile line, named
``p99``..., plus ``deploys`` with the deploy ids as ``customdata`` and ``exemplars``), all x values
as wall-clock ms ("as if UTC").
"""

from __future__ import annotations

from typing import Any

VEGA_JS = r"""
const wallOf = (scale) => (px) => {
  const d = new Date(+scale.invert(px));
  if (scale.type === 'utc') return +d;
  return Date.UTC(d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(),
                  d.getMilliseconds());
};
function viewOf(el) {
  const key = Object.keys(el).find((k) => k.startsWith('__reactFiber$'));
  for (let f = key ? el[key] : null, depth = 0; f && depth < 60; f = f.return, depth++) {
    for (let h = f.memoizedState; h && typeof h === 'object' && 'next' in h; h = h.next) {
      const v = h.memoizedState;
      const c = v && typeof v === 'object' && 'current' in v ? v.current : v;
      if (c && typeof c.scenegraph === 'function' && typeof c.scale === 'function') return c;
    }
  }
  return null;
}
const plain = (datum) => {
  const out = {};
  for (const [k, v] of Object.entries(datum || {})) {
    if (v instanceof Date) out[k] = +v;
    else if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) out[k] = (typeof v === 'number' && !isFinite(v)) ? null : v;
  }
  return out;
};
return Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]')).map((el) => {
  const view = viewOf(el);
  if (!view) return null;
  const xs = view.scale('x');
  const wall = wallOf(xs);
  const surface = el.querySelector('canvas.marks, svg.marks');
  const box = surface ? surface.getBoundingClientRect() : el.getBoundingClientRect();
  const [ox, oy] = view.origin();
  const marks = {};
  const titles = [];
  const walk = (mark, gx, gy) => {
    if (!mark || !mark.marktype) return;
    for (const it of mark.items || []) {
      if (mark.role === 'axis-title') titles.push(it.text);
      if (mark.name && it.datum && mark.role === 'mark') {
        const x = gx + (it.x || 0), y = gy + (it.y || 0);
        (marks[mark.name] = marks[mark.name] || []).push(
          {x: wall(x), px: x, client: [box.left + ox + x, box.top + oy + y], datum: plain(it.datum)});
      }
      for (const child of it.items || []) walk(child, gx + (it.x || 0), gy + (it.y || 0));
    }
  };
  walk(view.scenegraph().root, 0, 0);
  return {scaleType: xs.type, range: xs.domain().map((d) => wall(xs(d))), titles, marks};
});
"""


def vega_charts(driver: Any) -> list[dict[str, Any]]:
    """Every Vega-Lite chart of the page as drawn (None for one whose view is not up yet)."""
    return [c for c in driver.execute_script(VEGA_JS) if c]


def vega_figures(driver: Any) -> list[dict[str, Any]]:
    """Each Vega-Lite chart of the page in the clock tests' figure shape (see the module docstring)."""
    out = []
    for c in vega_charts(driver):
        marks = c["marks"]
        lines = marks.get("lines_marks", [])
        traces = []
        for name in dict.fromkeys(m["datum"].get("p") for m in lines):
            items = [m for m in lines if m["datum"].get("p") == name]
            traces.append({"name": name, "x": [m["x"] for m in items], "y": [m["datum"].get("v") for m in items],
                           "customdata": []})
        deploys = marks.get("deploy_marks_marks", [])
        traces.append({"name": "deploys", "x": [m["x"] for m in deploys],
                       "y": [None] * len(deploys), "customdata": [m["datum"]["deploy_id"] for m in deploys],
                       "client": [m["client"] for m in deploys]})
        ex = marks.get("exemplars_marks", [])
        traces.append({"name": "exemplars", "x": [m["x"] for m in ex], "y": [m["datum"].get("ms") for m in ex],
                       "customdata": []})
        title = next((t for t in c["titles"] if t.startswith("time")), None)
        out.append({"title": title, "range": c["range"], "traces": traces, "shapes": [],
                    "scale": c["scaleType"]})
    return out


def click_at(driver: Any, client: list[float]) -> None:
    """A real pointer click at viewport coordinates ``client`` (a drawn mark's position)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(client[0])), int(round(client[1])))
    actions.pointer_action.pause(0.3).click()
    actions.perform()
