"""Clicking the Latent map (AppTest): one image to Decode or Interpolate, the 2-D plane decoded; Decode's picks
and its sliders ranked by KL."""

import json
from pathlib import Path

import numpy as np
from streamlit.proto.WidgetStates_pb2 import WidgetStates

from tests.app_support import app_test, assert_no_exception, chart_by_key, select_model
from tests.app_support import plotly_array as array
from vae_app.decode_parts import slider_label
from vae_core.checkpoints import load_checkpoint
from vae_core.health import DimensionRanking, rank_dimensions_of

MAP = "vae_app/views/latent_map.py"
DECODE = "vae_app/views/decode.py"


def open_page(page: str, app_env: Path, model: str):
    return select_model(app_test(page), app_env / f"{model}.pt")


def run_with_selection(at, points: list[dict], *, key: str = "latent_map_chart"):
    """Rerun as the browser does after a click on the chart ``key``: with its selection among the widget states.

    AppTest cannot click a Plotly chart, so this adds the selection Streamlit's frontend would send.
    """
    (chart,) = [c for c in at.get("plotly_chart") if c.key == key]
    states: WidgetStates = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    selection = {
        "points": points,
        "point_indices": [p["point_index"] for p in points],
        "box": [],
        "lasso": [],
    }
    state.string_value = json.dumps({"selection": selection})
    at._run(widget_state=states)
    assert_no_exception(at)
    return at


def image_point(at, row: int) -> dict:
    """Return the selection point Plotly reports for a click on atlas row ``row``'s dot."""
    spec = chart_by_key(at, "latent_map_chart")
    for curve, trace in enumerate(spec["data"]):
        custom = array(trace.get("customdata", []))
        hits = np.flatnonzero(custom == row)
        if len(hits):
            i = int(hits[0])
            x, y = float(array(trace["x"])[i]), float(array(trace["y"])[i])
            return {
                "curve_number": curve,
                "point_number": i,
                "point_index": i,
                "x": x,
                "y": y,
                "customdata": row,
            }
    raise AssertionError(f"row {row} is not on the map")


def z_sliders(at) -> list:
    return [s for s in at.slider if s.key and s.key.startswith("decode_z") and s.key[8:].isdigit()]


def z_values(at) -> np.ndarray:
    return np.array([s.value for s in sorted(z_sliders(at), key=lambda s: int(s.key[8:]))])


def current_marker(at) -> np.ndarray:
    (trace,) = [t for t in chart_by_key(at, "decode_map")["data"] if t["name"] == "current z"]
    return np.array([array(trace["x"])[0], array(trace["y"])[0]])


def test_a_clicked_image_opens_in_decode_with_its_code(app_env: Path):
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    at = open_page(MAP, app_env, "tiny-conv-4")
    row = 17
    run_with_selection(at, [image_point(at, row)])
    assert at.subheader[0].value.startswith(f"Image #{row} · ")
    assert [b.label for b in at.button] == [
        "Open in Decode",
        "Use as A in Interpolate",
        "Use as B in Interpolate",
    ]
    at.button(key="latent_map_open_decode").click()
    run_with_selection(at, [image_point(at, row)])
    assert at.title[0].value == "Decode"
    assert "decode_pick" not in at.session_state  # consumed once
    np.testing.assert_allclose(z_values(at), atlas.mu[row], atol=0.006)
    np.testing.assert_allclose(
        current_marker(at), atlas.coords[row], atol=1e-5
    )  # the star on the clicked dot
    # The pick is not applied again: a slider moved afterwards stays where it was put. (AppTest's next run
    # goes back to the page it last switched to, so switch to Decode as the browser now shows it.)
    at.switch_page(DECODE)
    at.slider(key="decode_z2").set_value(1.5).run()
    assert z_values(at)[2] == 1.5


def test_a_clicked_image_becomes_an_end_of_the_interpolation(app_env: Path):
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    for end, row in (("a", 40), ("b", 3)):
        at = open_page(MAP, app_env, "tiny-conv-4")
        run_with_selection(at, [image_point(at, row)])
        at.button(key=f"latent_map_use_{end}").click()
        run_with_selection(at, [image_point(at, row)])
        assert at.title[0].value == "Interpolate"
        assert f"interp_{end}_pick" not in at.session_state  # the picker honoured it
        label = int(atlas.labels[row])
        assert at.session_state[f"interp_{end}_class"] == label
        members = np.flatnonzero(atlas.labels == label)
        assert members[at.session_state[f"interp_{end}_index"]] == row


def test_a_selection_of_several_images_keeps_the_grids(app_env: Path):
    at = open_page(MAP, app_env, "tiny-conv-4")
    run_with_selection(at, [image_point(at, 1), image_point(at, 2), image_point(at, 5)])
    assert at.subheader[0].value == "3 selected"
    assert not [b for b in at.button if b.key == "latent_map_open_decode"]


def test_clicking_the_2d_plane_decodes_that_z_and_offers_its_neighbourhood(app_env: Path):
    at = open_page(MAP, app_env, "tiny-mlp-2")
    spec = chart_by_key(at, "latent_map_chart")
    curve = [t["name"] for t in spec["data"]].index("latent plane")
    plane = spec["data"][curve]
    pictures = []
    for i in (0, 1830):
        x, y = float(array(plane["x"])[i]), float(array(plane["y"])[i])
        point = {"curve_number": curve, "point_number": i, "point_index": i, "x": x, "y": y, "customdata": -1}
        run_with_selection(at, [point])
        assert at.subheader[0].value == f"z = ({x:.2f}, {y:.2f})"
        (html,) = [m.value for m in at.markdown if 'alt="The decoded image"' in m.value]
        pictures.append(html)
        labels = [b.label for b in at.get("download_button")]
        assert labels == ["Download PNG", "Download this neighbourhood (PNG)"]
    assert pictures[0] != pictures[1]  # another z, another image
    at.button(key="latent_map_plane_decode").click()
    run_with_selection(at, [point])
    assert at.title[0].value == "Decode"
    np.testing.assert_allclose(z_values(at), [x, y], atol=0.006)
    np.testing.assert_allclose(current_marker(at), np.round([x, y], 2), atol=1e-5)


def test_decode_takes_a_z_and_refuses_one_of_the_wrong_size(app_env: Path):
    at = app_test()
    at.session_state["decode_pick_z"] = [0.5, -1.25, 0.0, 4.2]
    at.switch_page(DECODE)
    select_model(at, app_env / "tiny-conv-4.pt")
    np.testing.assert_allclose(z_values(at), [0.5, -1.25, 0.0, 4.2])
    assert at.number_input(key="decode_range").value == 4.5  # widened, not clipped
    at.session_state["decode_pick_z"] = [1.0, 2.0]
    at.run()
    assert any("has 2 numbers" in w.value for w in at.warning)
    np.testing.assert_allclose(z_values(at), [0.5, -1.25, 0.0, 4.2])


def test_decode_sliders_are_ranked_by_kl_and_inactive_ones_marked(app_env: Path):
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    ranks = rank_dimensions_of(atlas.mu, atlas.logvar)
    at = open_page(DECODE, app_env, "tiny-conv-4")
    shown = [int(s.key[8:]) for s in z_sliders(at)]
    assert shown == ranks.order.tolist()
    for s in z_sliders(at):
        i = int(s.key[8:])
        inactive = "inactive, " if not ranks.active[i] else ""
        assert s.label == f"z{i} · {inactive}KL {ranks.kl[i]:.2f}"
    # the z vector keeps its indices: moving the slider of the top-ranked dimension changes that coordinate
    top = int(ranks.order[0])
    at.slider(key=f"decode_z{top}").set_value(2.0).run()
    assert at.session_state["decode_z"][top] == 2.0


def test_slider_labels_mark_inactive_dimensions():
    ranks = DimensionRanking(np.array([1, 0]), np.array([0.0132, 2.345]), np.array([False, True]))
    assert slider_label(0, ranks) == "z0 · inactive, KL 0.01"
    assert slider_label(1, ranks) == "z1 · KL 2.35"
    assert slider_label(3, None) == "z3"  # no atlas, no KL
