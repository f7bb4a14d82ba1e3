"""Runs page parts: the table of saved runs, rename / delete / activate, and the comparison of 2–4 of them.

The selection is kept as run ids (in session state and in the URL as ?compare=ID,ID), not as table rows:
rows move whenever a run is added or deleted (a sweep in the background adds them while you look).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pandas as pd
import streamlit as st

from mnistcore.config import TrainConfig
from mnistcore.experiments import EXPORT_FILES, compare_evaluations, confusion_csv, predictions_csv
from mnistcore.runs import META, NAME_MAX, WEIGHTS, RunError, RunInfo
from ui import auth, cache, session
from ui.figures import recall_bars, run_curves
from ui.gallery import html_grid

COMPARE_PARAM = "compare"  # ?compare=ID,ID,…: the runs selected for comparison
SELECTED = "runs_selected"  # session_state: the selected run ids, in selection order
MAX_COMPARED = 4
GALLERY_MAX = 120  # images per fixed/broken gallery (the counts are always exact)
MIME = {
    WEIGHTS: "application/octet-stream",
    META: "application/json",
    "confusion.csv": "text/csv",
    "predictions.csv": "text/csv",
}


# ---------------------------------------------------------------- pure helpers (tested without a browser)


def shape(config: TrainConfig) -> str:
    """'784-128-10'."""
    return f"784-{config.hidden}-10"


def recipe(config: TrainConfig) -> str:
    """How a run was trained, in a few words: 'Adam 0.001 · batch 128 · dropout 0.2 · augment 50% · one-cycle'."""
    parts = [f"{'Adam' if config.optimizer == 'adam' else 'SGD'} {config.lr:g}", f"batch {config.batch_size}"]
    if config.weight_decay:
        parts.append(f"wd {config.weight_decay:g}")
    if config.dropout:
        parts.append(f"dropout {config.dropout:g}")
    if config.augment:
        parts.append(f"augment {config.augment_share:.0%}" if config.augment_share < 1 else "augment")
        if config.augment_style != "mnist":
            parts[-1] += f" ({config.augment_style})"
    if config.schedule == "onecycle":
        parts.append("one-cycle")
    if config.precision not in ("fp32", "auto"):  # auto: whatever suits the device, not a choice worth a word
        parts.append(config.precision)
    return " · ".join(parts)


def short_label(info: RunInfo) -> str:
    """A run's name, else its shape and time: what legends and column headers show."""
    return info.name or f"{shape(info.config)} {info.created[5:16].replace('T', ' ')}"


def table_frame(runs: list[RunInfo], owners: bool = False) -> pd.DataFrame:
    """One row per run (in the given order) with the columns the table shows (`owners`: who trained each)."""
    by_id = {r.run_id: r for r in runs}

    def parent(r: RunInfo) -> str:
        if r.parent is None:
            return ""
        p = by_id.get(r.parent)
        return short_label(p) if p is not None else f"{r.parent} (deleted)"

    trained_by = {"trained by": [r.owner.display if r.owner else "(command line)" for r in runs]} if owners else {}
    return pd.DataFrame(
        {
            **trained_by,
            "name": [r.name or "" for r in runs],
            "accuracy": [r.test_accuracy * 100 for r in runs],
            "shape": [shape(r.config) for r in runs],
            "recipe": [recipe(r.config) for r in runs],
            "epochs": [len(r.history) for r in runs],
            "time": [r.train_seconds for r in runs],
            "date": [datetime.fromisoformat(r.created).replace(tzinfo=None) for r in runs],
            "parent": [parent(r) for r in runs],
            "stopped": [r.stopped for r in runs],
            "run id": [r.run_id for r in runs],
        }
    )


def config_table(runs: list[RunInfo]) -> pd.DataFrame:
    """The settings that differ between runs (rows) per run (columns), plus epochs trained and parent."""
    dicts = [r.config.to_dict() for r in runs]
    rows: dict[str, list[str]] = {}
    for key in dicts[0]:
        values = [d[key] for d in dicts]
        if any(v != values[0] for v in values):
            rows[key] = [str(v) for v in values]
    trained = [len(r.history) for r in runs]
    if len(set(trained)) > 1:
        rows["epochs trained"] = [str(t) for t in trained]
    if any(r.parent for r in runs):
        by_id = {r.run_id: r for r in runs}
        rows["continues"] = [short_label(by_id[r.parent]) if r.parent in by_id else (r.parent or "") for r in runs]
    columns = _unique([short_label(r) for r in runs])
    return pd.DataFrame(rows, index=columns).T if rows else pd.DataFrame()


def _unique(labels: list[str]) -> list[str]:
    """Labels made distinct (two runs may share a name) by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def parse_compare(value: str | None, known: list[str]) -> list[str]:
    """Run ids from ?compare=A,B (unknown ones dropped, order kept, at most MAX_COMPARED)."""
    ids = [v for v in (value or "").split(",") if v in known]
    return list(dict.fromkeys(ids))[:MAX_COMPARED]


# ---------------------------------------------------------------- selection, kept as run ids


def _selected(runs: list[RunInfo]) -> list[str]:
    """The selected run ids: from a new ?compare= link, else this session's, dropping runs that are gone."""
    known = [r.run_id for r in runs]
    link = st.query_params.get(COMPARE_PARAM)
    if link is not None and link != st.session_state.get("runs_link_seen"):
        st.session_state["runs_link_seen"] = link
        st.session_state[SELECTED] = parse_compare(link, known)
    chosen = [rid for rid in st.session_state.get(SELECTED, []) if rid in known]
    st.session_state[SELECTED] = chosen
    return chosen


def _store_selection(ids: list[str]) -> None:
    st.session_state[SELECTED] = ids
    value = ",".join(ids[:MAX_COMPARED]) if ids else None
    st.session_state["runs_link_seen"] = value
    if value is None:
        st.query_params.pop(COMPARE_PARAM, None)
    elif st.query_params.get(COMPARE_PARAM) != value:
        st.query_params[COMPARE_PARAM] = value


def scope(runs: list[RunInfo]) -> list[RunInfo]:
    """With sign-in: "Mine" or "Everyone" (a class board), and the best run per person; else all runs as they are."""
    me = auth.current_owner()
    if me is None:
        return runs
    choice = st.segmented_control(
        "Show", ["Mine", "Everyone"], default="Everyone", key="runs_scope", help="Your runs, or the whole class's"
    )
    if choice == "Mine":
        return [r for r in runs if me.same_person(r.owner)]
    with st.expander("Best run per person", icon=":material/leaderboard:"):
        st.dataframe(best_per_person(runs), hide_index=True, key="runs_best", width="content")
    return runs


def best_per_person(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per person (best first): their number of runs, best test accuracy and that run."""
    best: dict[str, tuple[RunInfo, int]] = {}
    for r in runs:
        who = r.owner.display if r.owner else "(command line)"
        top, count = best.get(who, (r, 0))
        best[who] = (r if r.test_accuracy > top.test_accuracy else top, count + 1)
    rows = sorted(best.items(), key=lambda kv: -kv[1][0].test_accuracy)
    return pd.DataFrame(
        {
            "person": [who for who, _ in rows],
            "runs": [count for _, (_, count) in rows],
            "best accuracy": [f"{r.test_accuracy:.2%}" for _, (r, _) in rows],
            "best run": [short_label(r) for _, (r, _) in rows],
        }
    )


def table(runs: list[RunInfo]) -> list[RunInfo]:
    """The sortable table of all runs with a tick box per row; returns the selected runs (selection order)."""
    selected = _selected(runs)
    df = table_frame(runs, owners=auth.configured())
    ids = list(df["run id"])
    # The widget is keyed by the list of runs: when it changes, rows move, so the selection is rebuilt from ids.
    key = "runs_table_" + hashlib.sha1(",".join(ids).encode()).hexdigest()[:10]
    rows = [ids.index(rid) for rid in selected]
    event = st.dataframe(
        df,
        key=key,
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        selection_default={"selection": {"rows": rows}},
        column_config={
            "name": st.column_config.TextColumn("name", help="Rename a run below the table"),
            "accuracy": st.column_config.NumberColumn("accuracy", format="%.2f%%", help="On the 10 000 test images"),
            "epochs": st.column_config.NumberColumn("epochs", help="Epochs trained, parents' included"),
            "time": st.column_config.NumberColumn("time", format="%.1f s", help="Training time, parents' included"),
            "date": st.column_config.DatetimeColumn("date (UTC)", format="YYYY-MM-DD HH:mm"),
            "parent": st.column_config.TextColumn("parent", help="The run this one continued"),
            "stopped": st.column_config.CheckboxColumn("stopped", help="Saved from a stopped run"),
        },
    )
    picked_rows = list(event.selection.rows) if event is not None else rows
    picked = [ids[i] for i in picked_rows if 0 <= i < len(ids)]
    # Keep the order in which runs were ticked: the first two are "A" and "B" of the comparison.
    ordered = [rid for rid in selected if rid in picked] + [rid for rid in picked if rid not in selected]
    if ordered != selected or st.query_params.get(COMPARE_PARAM) != (",".join(ordered[:MAX_COMPARED]) or None):
        _store_selection(ordered)
    by_id = {r.run_id: r for r in runs}
    return [by_id[rid] for rid in ordered]


# ---------------------------------------------------------------- actions on the selection


def _rename(run_id: str) -> None:
    try:
        cache.store().rename(run_id, st.session_state.get(f"runs_name_{run_id}"))
    except RunError as exc:
        st.session_state["runs_error"] = str(exc)


def _delete(run_ids: list[str]) -> None:
    active = st.session_state.get(session.ACTIVE_RUN)
    for rid in run_ids:
        try:
            cache.store().delete(rid)
        except RunError as exc:
            st.session_state["runs_error"] = str(exc)
            continue
        cache.forget_run(rid)
        if rid == active:
            session.set_active(None)
    _store_selection([rid for rid in st.session_state.get(SELECTED, []) if rid not in run_ids])


def actions(selected: list[RunInfo]) -> None:
    """Rename (one run), make active (one run), delete (any number, asks first)."""
    if err := st.session_state.pop("runs_error", None):
        st.error(err)
    if not selected:
        st.caption("Tick runs in the table to rename, delete, download or compare them (two to four).")
        return
    cols = st.columns([3, 1.3, 1.3, 1.2], vertical_alignment="bottom")
    mine = all(auth.may_change(r.owner) for r in selected)
    if len(selected) == 1 and not mine:
        run = selected[0]
        cols[0].caption(
            f"Trained by {run.owner.display if run.owner else 'the operator (command line)'}: only its owner "
            "(or an instructor) can rename, delete or continue it."
        )
        if cols[2].button(
            "Make active",
            key="runs_activate",
            icon=":material/check_circle:",
            disabled=session.active_run_id() == run.run_id,
        ):
            session.set_active(run.run_id)
            st.rerun()
        return
    if not mine:
        cols[0].markdown(f"**{len(selected)} runs selected**, not all yours: only their owners can delete them.")
        return
    if len(selected) == 1:
        run = selected[0]
        key = f"runs_name_{run.run_id}"
        st.session_state.setdefault(key, run.name or "")
        cols[0].text_input(
            "Name",
            key=key,
            max_chars=NAME_MAX,
            placeholder="a short name for this run",
            help="Up to 40 characters; empty clears the name",
        )
        cols[1].button("Rename", key="runs_rename", on_click=_rename, args=(run.run_id,), icon=":material/edit:")
        if cols[2].button(
            "Make active",
            key="runs_activate",
            icon=":material/check_circle:",
            help="Use this model on the other pages (Confusion, Errors, Draw…)",
            disabled=session.active_run_id() == run.run_id,
        ):
            session.set_active(run.run_id)
            st.rerun()
    else:
        cols[0].markdown(f"**{len(selected)} runs selected**")
    with cols[3].popover("Delete…", icon=":material/delete:", key="runs_delete"):
        names = ", ".join(short_label(r) for r in selected)
        st.warning(
            f"Delete {len(selected)} run{'s' if len(selected) > 1 else ''} ({names})? "
            "Their weights are removed from disk; this cannot be undone."
        )
        st.button(
            "Yes, delete",
            key="runs_delete_confirm",
            type="primary",
            on_click=_delete,
            args=([r.run_id for r in selected],),
        )


# ---------------------------------------------------------------- downloads


def _file(run: RunInfo, name: str) -> bytes:
    """One export file of a run, made only when its button is clicked (the CSVs take a moment for 10 000 rows)."""
    if name in (WEIGHTS, META):
        return (run.path / name).read_bytes()  # read fresh: a rename rewrites meta.json
    ev = cache.get_evaluation(run.run_id)
    if ev is None:
        raise RunError(f"{run.run_id} cannot be evaluated")
    return confusion_csv(ev) if name == "confusion.csv" else predictions_csv(ev)


def downloads(selected: list[RunInfo]) -> None:
    """A row of download buttons per selected run: its weights, meta.json and the two CSVs."""
    if not selected:
        return
    st.subheader("Download")
    st.caption(
        "The weights (safetensors), the run's meta.json, the confusion matrix and every test image's "
        "prediction with its ten probabilities — the same files as `python -m mnistcore export`."
    )
    for run in selected:
        cols = st.columns([1.6, 1.3, 1, 1.1, 1.2], vertical_alignment="center")
        cols[0].markdown(f"**{short_label(run)}**  \n`{run.run_id}`")
        for col, name in zip(cols[1:], EXPORT_FILES, strict=True):
            col.download_button(
                name,
                data=lambda run=run, name=name: _file(run, name),
                mime=MIME[name],
                file_name=f"{run.run_id}-{name}",
                key=f"runs_dl_{run.run_id}_{name}",
                icon=":material/download:",
                on_click="ignore",
                width="stretch",
            )


# ---------------------------------------------------------------- comparison


def curves(selected: list[RunInfo]) -> None:
    """Test accuracy and loss of the selected runs overlaid, per epoch or per second."""
    x = st.segmented_control(
        "Against",
        ["epoch", "seconds"],
        default="epoch",
        key="runs_curve_x",
        format_func=lambda v: "epochs" if v == "epoch" else "training time (s)",
        required=True,
    )
    labels = _unique([short_label(r) for r in selected])
    if any(r.parent for r in selected):
        st.caption("A continued run's curve starts with the epochs of the run it continued.")
    with st.container(key="runs_curves"):
        st.plotly_chart(
            run_curves(list(zip(labels, [r.history for r in selected], strict=True)), x=x or "epoch"),
            key="runs_curves_chart",
            config={"displayModeBar": False},
        )


def compare(selected: list[RunInfo]) -> None:
    """Config diff, per-class recall side by side, and the images B fixed / broke relative to A."""
    labels = _unique([short_label(r) for r in selected])
    st.subheader("Settings that differ")
    diff = config_table(selected)
    if diff.empty:
        st.caption("Same settings (a different seed or a rerun of the same recipe would still differ in detail).")
    else:
        st.dataframe(diff, key="runs_diff", width="content")
    evs = [cache.get_evaluation(r.run_id) for r in selected]
    if any(ev is None for ev in evs):
        return
    st.subheader("Recall per digit")
    st.plotly_chart(
        recall_bars(labels, np.stack([ev.recall for ev in evs])), key="runs_recall", config={"displayModeBar": False}
    )
    st.subheader("Fixed and broken test images")
    pick = {label: i for i, label in enumerate(labels)}
    c = st.columns(2)
    a = pick[c[0].selectbox("A (before)", labels, index=0, key="runs_pair_a")]
    b = pick[c[1].selectbox("B (after)", labels, index=1, key="runs_pair_b")]
    if a == b:
        st.info("Pick two different runs as A and B.")
        return
    cmp = compare_evaluations(selected[a], evs[a], selected[b], evs[b])
    delta = cmp.fixed - cmp.broken
    st.markdown(
        f"**{labels[b]}** gets **{cmp.fixed}** test images right that **{labels[a]}** got wrong, and "
        f"**{cmp.broken}** wrong that it got right: {delta:+d} images, "
        f"{(cmp.accuracy[1] - cmp.accuracy[0]) * 100:+.2f} points of accuracy."
    )
    images = cache.test_images()
    left, right = st.columns(2)
    for col, idx, ev_wrong, title, key, who in (
        (left, cmp.fixed_indices, evs[a], "Fixed: A wrong, B right", "fixed", "A"),
        (right, cmp.broken_indices, evs[b], "Broken: A right, B wrong", "broken", "B"),
    ):
        with col, st.container(key=f"runs_{key}"):
            st.markdown(f"**{title}** ({len(idx)})")
            if len(idx) == 0:
                st.caption("None.")
                continue
            shown = idx[:GALLERY_MAX]
            captions = [f"{ev_wrong.labels[i]} → {ev_wrong.predictions[i]}" for i in shown]
            st.html(html_grid(images[shown], captions, shown))
            more = f" (the first {GALLERY_MAX} shown)" if len(idx) > GALLERY_MAX else ""
            st.caption(f"Captions: true digit → {who}'s wrong answer; {who}'s most confident mistakes first{more}.")
