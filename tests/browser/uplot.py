"""Reading the Latency page's percentile chart (uPlot, ``dashboard.components.percentile_chart``) as
Chromium drew it.

The chart's script keeps, on its root element (``.percentile-chart``), the uPlot instance, the
function that gives the Date whose local fields are the wall-clock time the x axis prints for a
value (uPlot's ``tzDate``: the browser's zone, or UTC on the ``utc`` scale) and the pixel positions
of the deploy markers and exemplars it drew. :data:`UPLOT_JS` turns every drawn x position (a
pixel) back into a value with the chart's own x scale (``posToVal``) and then into the wall-clock
time the axis shows there. So, as for Plotly's ``calcdata``, what is checked is where things are
drawn and what the axis says at that place, not what was sent.

:func:`chart_figures` gives each chart in the shape the clock tests use for Plotly figures:
``title`` (x-axis title), ``range`` (the axis's ends), ``traces`` (one per percentile line, named
``p99``..., plus ``deploys`` with the deploy ids as ``customdata`` and their viewport positions as
``client``, and ``exemplars``), all x values as wall-clock ms ("as if UTC").
"""

from __future__ import annotations

from typing import Any

UPLOT_JS = r"""
return Array.from(document.querySelectorAll('.percentile-chart[data-ready]:not([data-skeleton])')).map((el) => {
  const c = el.__chart;
  if (!c) return null;
  const u = c.u;
  const wallOf = (v) => {
    const d = c.tzDate(v);
    return Date.UTC(d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(),
                     d.getMilliseconds());
  };
  const atPx = (px) => wallOf(u.posToVal(px, 'x'));
  const over = u.over.getBoundingClientRect();
  const title = (u.root.querySelector('.u-axis .u-label') || {}).textContent || c.title;
  const traces = c.labels.map((name, i) => ({
    name,
    x: Array.from(u.data[0], (t) => atPx(u.valToPos(t, 'x'))),
    y: Array.from(u.data[1 + i], (v) => (v == null ? null : v)),
    customdata: [],
  }));
  traces.push({name: 'deploys', x: c.drawn.deploys.map((m) => atPx(m.px)), y: c.drawn.deploys.map(() => null),
               customdata: c.drawn.deploys.map((m) => m.id),
               client: c.drawn.deploys.map((m) => [over.left + m.px, over.top + m.py])});
  traces.push({name: 'exemplars', x: c.drawn.exemplars.map((m) => atPx(m.px)),
               y: c.drawn.exemplars.map((m) => u.posToVal(m.py, 'y')), customdata: []});
  return {title, scale: c.scale, range: [atPx(0), atPx(over.width)], traces, shapes: []};
});
"""


def chart_figures(driver: Any) -> list[dict[str, Any]]:
    """Each drawn percentile chart of the page in the clock tests' figure shape (see the module
    docstring); a chart not drawn yet is left out."""
    return [c for c in driver.execute_script(UPLOT_JS) if c]


def hover_at(driver: Any, client: list[float]) -> None:
    """A real pointer move to viewport coordinates ``client`` (a drawn mark's position)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(client[0])), int(round(client[1])))
    actions.pointer_action.pause(0.3)
    actions.perform()


def click_at(driver: Any, client: list[float]) -> None:
    """A real pointer click at viewport coordinates ``client`` (a drawn mark's position)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(client[0])), int(round(client[1])))
    actions.pointer_action.pause(0.3).click()
    actions.perform()
