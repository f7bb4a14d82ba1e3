"""Label issues page parts: the cached result (or a task that computes it), the flagged images by digit,
the explanation, and "train without them" as a background task compared on the test set."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from mnistcore.label_issues import (
    CleanedComparison,
    LabelIssues,
    Recipe,
    default_cache_dir,
    find_cached,
    label_issues,
    train_without_flagged,
)
from ui import cache, session
from ui.background import JobError, Status
from ui.gallery import html_grid
from ui.tasks import TASKS, Task

FIND, CLEAN = "label_issues", "train_cleaned"
ANY = "any"
SHOWN_MAX = 400

EXPLANATION = """
**How they were found.** Each training image is scored by shallow nets that never saw it: the 60 000 images
are cut into {folds} folds, {seeds} nets (784-{hidden}-10, {epochs} epochs) are trained on the other {k1}
folds and give the held-out fold's class probabilities, so every image gets *out-of-fold* probabilities
(test images: nets trained on the whole training set). [cleanlab](https://github.com/cleanlab/cleanlab)'s
`find_label_issues` (confident learning, Northcutt et al. 2021) estimates from them how often each digit is
mislabelled as each other digit and flags the images whose given label the probabilities contradict most.
They are ranked by *self-confidence*, the probability the nets give the given label: lowest first.
A flagged image is not always mislabelled; it can also be one so badly written that any label is a guess.
"""


def cached(split: str, data) -> LabelIssues | None:
    """The result for this MNIST and the default recipe, if computed before (CLI, dashboard, or shipped)."""
    return find_cached(data, split, Recipe(), default_cache_dir(cache.data_dir()))


def _find_work(task: Any, stop: Any, split: str, data, cache_dir: Any) -> LabelIssues:
    """The find-label-issues task (runs in its own process, see ui/tasks.py)."""
    return label_issues(
        data,
        split,
        Recipe(),
        cache_dir=cache_dir,
        on_progress=lambda p: task.progress(p.fraction, p.message),
        stop=stop,
    )


def find_prompt(split: str, data) -> None:
    """No cached result yet: what it does, a button that computes it in the background, its progress."""
    sid = session.session_id()
    task = TASKS.get(sid, FIND)
    r = Recipe()
    nets = r.folds * r.seeds if split == "train" else r.seeds
    st.info(
        f"Not computed yet for this data's {split} split (the result for the standard MNIST files ships with "
        f"MNIST Lab; these files differ). It trains {nets} shallow nets; how long depends on this machine, so the "
        "progress bar times the first net and then says how long the rest will take. The result is then kept "
        "for everyone on this server."
    )
    if st.button(
        "Find label issues",
        key="li_find",
        type="primary",
        icon=":material/search:",
        disabled=task is not None and task.running,
    ):
        try:
            task = TASKS.start(sid, FIND, _find_work, split, data, default_cache_dir(cache.data_dir()))
        except JobError as exc:
            st.error(str(exc))
    if task is not None:
        _progress(task, "li_find", on_done=None)


def _progress(task: Task, key: str, on_done) -> None:
    was_running = task.running

    @st.fragment(run_every=0.5 if was_running else None)
    def _live() -> None:
        snap = task.snapshot()
        if snap.running:
            st.progress(snap.fraction, text=snap.message)
            st.button("Stop", key=f"{key}_stop", on_click=task.stop)
        elif was_running:
            st.rerun()
        elif snap.status == Status.FAILED:
            st.error(f"Failed: {snap.error}")
        elif snap.status == Status.FINISHED and on_done is not None:
            on_done(snap.result)
        elif snap.status != Status.FINISHED:
            st.info("Stopped; nothing was saved.")

    _live()


def summary(result: LabelIssues) -> None:
    c = result.recipe.get("config", {})
    with st.container(key="li_summary"):
        a, b, d = st.columns(3)
        a.metric("Flagged", f"{len(result.issues)}", help=f"of {result.scored:,} {result.split} images")
        b.metric("Out-of-sample accuracy", f"{result.accuracy:.2%}", help="of the nets that scored the images")
        where = (
            "shipped with MNIST Lab for the standard MNIST files, computed once on the developers' machine"
            if result.shipped
            else "computed on this server"
        )
        d.metric(
            "Computed in",
            f"{result.seconds:.0f} s",
            help=f"{where}; {result.created} UTC, cleanlab "
            f"{result.cleanlab_version}, {result.precision or 'unrecorded'} precision",
        )
    with st.expander("How were they found?", icon=":material/help:"):
        st.markdown(
            EXPLANATION.format(
                folds=result.recipe.get("folds"),
                seeds=result.recipe.get("seeds"),
                hidden=c.get("hidden"),
                epochs=c.get("epochs"),
                k1=(result.recipe.get("folds") or 1) - 1,
            )
        )


def flagged_grid(result: LabelIssues, images: np.ndarray) -> None:
    """The flagged images, filtered by given or suggested digit, most suspicious first."""
    c = st.columns([1, 1, 3])
    given = c[0].selectbox("Given label", [ANY, *range(10)], key="li_given")
    suggested = c[1].selectbox("Suggested label", [ANY, *range(10)], key="li_suggested")
    shown = [i for i in result.issues if given in (ANY, i.given) and suggested in (ANY, i.suggested)]
    if not shown:
        st.info("No flagged image matches these filters.")
        return
    st.caption(
        f"{len(shown)} image(s), captions read “given → suggested”, most suspicious first"
        + (f" (the first {SHOWN_MAX} shown)" if len(shown) > SHOWN_MAX else "")
        + "."
    )
    shown = shown[:SHOWN_MAX]
    with st.container(key="li_grid"):
        st.html(
            html_grid(
                images[[i.index for i in shown]],
                [f"{i.given} → {i.suggested}" for i in shown],
                [i.index for i in shown],
            )
        )
    with st.expander("As a table (index in the split, labels, score)", icon=":material/table:"):
        st.dataframe(
            [
                {"index": i.index, "given": i.given, "suggested": i.suggested, "self-confidence": round(i.score, 4)}
                for i in shown
            ],
            key="li_table",
            hide_index=True,
        )


def _clean_work(task: Any, stop: Any, runs: Any, run_id: str, data, flagged: np.ndarray) -> CleanedComparison | None:
    """The train-without-the-flagged-images task (runs in its own process, see ui/tasks.py)."""
    task.progress(0.0, "Training without the flagged images…")
    return train_without_flagged(
        runs, run_id, data, flagged, on_event=task.on_train_event, stop=stop, source="dashboard"
    )


def train_without(result: LabelIssues, run_id: str | None, data) -> None:
    """One click: the active model's recipe trained without the flagged training images, compared on test."""
    with st.container(border=True, key="li_clean"):
        st.markdown(
            f"**What does training without them do?** Train the active model's recipe (same settings, same "
            f"seed) on the {60000 - len(result.issues) if result.scored == 60000 else 'remaining'} training "
            f"images left after removing the {len(result.issues)} flagged ones, and compare on the test set."
        )
        if run_id is None:
            st.caption("Train a model first: its recipe is the one used.")
            return
        sid = session.session_id()
        task = TASKS.get(sid, CLEAN)
        if st.button(
            "Train without the flagged images",
            key="li_clean_start",
            icon=":material/cleaning_services:",
            disabled=task is not None and task.running,
        ):
            try:
                task = TASKS.start(sid, CLEAN, _clean_work, cache.store(), run_id, data, result.flagged_indices())
            except JobError as exc:
                st.error(str(exc))
        if task is not None:
            _progress(task, "li_clean", on_done=_compare)


def _compare(r: CleanedComparison) -> None:
    with st.container(key="li_clean_result"):
        if r.unsaved:
            st.warning(f"{r.unsaved}; it was saved in {r.run.path} instead: copy that folder into the runs folder")
        a, b, c = st.columns(3)
        a.metric("Trained on everything", f"{r.accuracy_with:.2%}", help=f"run {r.baseline.run_id}")
        b.metric(
            f"Without the {r.removed} flagged",
            f"{r.accuracy_without:.2%}",
            f"{(r.accuracy_without - r.accuracy_with) * 100:+.2f} points",
            help=f"run {r.run.run_id}",
        )
        c.metric(
            "Test images fixed / broken",
            f"{r.fixed} / {r.broken}",
            help="right now but wrong before / wrong now but right before",
        )
        st.caption(
            "A difference of a few test images is within the noise of one training run; the new run is "
            "saved and can be picked in the sidebar."
        )
