"""My drawings: this browser's collection (save from Draw, upload, gallery, relabel, delete), the active model
on it, fine-tuning on it as a background task, and export/import as a zip."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import streamlit as st

from mnistcore.drawings import (
    MAX_IMAGE_BYTES,
    MAX_ZIP_BYTES,
    DrawingError,
    DrawingStore,
    FineTuneResult,
    default_drawings_dir,
    evaluate_drawings,
    fine_tune_on_drawings,
)
from mnistcore.preprocess import PreparedDigit
from ui import auth, cache, session
from ui.background import JobError, Status
from ui.figures import confusion_figure, upscale
from ui.gallery import html_grid
from ui.tasks import TASKS, Task

FINE_TUNE = "finetune"
ALL = "All"
PER_ROW = 10


def drawing_store() -> DrawingStore:
    """This browser's collection in the drawings store (one folder per browser; with sign-in, per person)."""
    actor = auth.actor()
    limit = actor.max_drawings if actor is not None else None
    return DrawingStore(default_drawings_dir(cache.data_dir()), session.session_id(), max_drawings=limit)


def counts_text(counts: np.ndarray) -> str:
    total = int(counts.sum())
    if not total:
        return "No drawings saved yet."
    return f"{total} saved: " + " · ".join(f"**{d}**×{int(n)}" for d, n in enumerate(counts) if n)


# ---------------------------------------------------------------- Draw page: save this drawing


def _save(key: str, image: bytes | np.ndarray, prepared: PreparedDigit | None, predicted: int, digest: str) -> None:
    label = st.session_state.get(f"{key}_label")
    try:
        drawing_store().add(
            image, predicted if label is None else int(label), prepared=prepared, predicted=predicted, source="draw"
        )
    except DrawingError as exc:
        st.session_state[f"{key}_error"] = str(exc)
        return
    st.session_state[f"{key}_saved"] = digest
    st.session_state.pop(f"{key}_for", None)  # the next drawing's label starts from its own prediction again


def save_drawing_box(
    png_bytes: bytes | np.ndarray, prepared: PreparedDigit | None, predicted_digit: int, key: str
) -> None:
    """'Save this drawing' under a prediction: the label preset to the prediction, one click to correct it,
    the save button, and this browser's running count per digit.

    png_bytes: the picture as PNG (or JPEG) bytes, or as a uint8 array (e.g. the rasterised strokes).
    prepared: the PreparedDigit the prediction was made from (stored as is), or None to prepare it again.
    """
    image = png_bytes
    raw = image.tobytes() if isinstance(image, np.ndarray) else bytes(image)
    digest = hashlib.md5(raw).hexdigest()
    predicted = int(predicted_digit)
    with st.container(border=True, key=f"{key}_box"):
        st.markdown("**Save this drawing** to My drawings — is the label right?")
        # The key follows the prediction, so the preset moves with it until the user picks a label.
        st.session_state.setdefault(f"{key}_label", predicted)
        if st.session_state.get(f"{key}_for") != predicted:
            st.session_state[f"{key}_for"] = predicted
            st.session_state[f"{key}_label"] = predicted
        st.segmented_control("Label", list(range(10)), key=f"{key}_label", label_visibility="collapsed")
        saved = st.session_state.get(f"{key}_saved") == digest
        st.button(
            "Saved ✓" if saved else "Save this drawing",
            key=f"{key}_save",
            disabled=saved,
            icon=":material/bookmark_add:",
            on_click=_save,
            args=(key, image, prepared, predicted, digest),
        )
        if err := st.session_state.pop(f"{key}_error", None):
            st.error(f"Not saved: {err}")
        st.caption(counts_text(drawing_store().counts()) + " — see them on **My drawings**.")


# ---------------------------------------------------------------- My drawings page


def upload(store: DrawingStore) -> None:
    """Add pictures (PNG/JPEG) of one digit."""
    n = st.session_state.get("dr_upload_n", 0)  # a new key empties the uploader once its files are added
    with st.expander(
        "Add pictures of a digit (PNG or JPEG)", icon=":material/upload:", expanded=n > 0
    ):  # stays open once used (a changing `expanded` would close it)
        with st.container(key="dr_upload"):
            files = st.file_uploader(
                "Pictures of one digit each",
                type=["png", "jpg", "jpeg"],
                accept_multiple_files=True,
                key=f"dr_upload_files_{n}",
                max_upload_size=MAX_IMAGE_BYTES >> 20,  # each picture, as the store accepts it
            )
        label = st.segmented_control("They all show the digit", list(range(10)), key="dr_upload_label")
        if st.button("Add them", key="dr_upload_add", disabled=not files or label is None):
            try:
                added = store.add_many([f.getvalue() for f in files], int(label), source="upload")
            except DrawingError as exc:
                st.error(f"Nothing was added: {exc}")
            else:
                st.session_state["dr_upload_n"] = n + 1
                st.session_state["dr_upload_msg"] = f"Added {len(added)} drawing(s) of a {label}."
                st.rerun()
        if msg := st.session_state.pop("dr_upload_msg", None):
            st.success(msg)


def _relabel(store: DrawingStore, drawing_id: str, key: str) -> None:
    try:
        store.relabel(drawing_id, int(st.session_state[key]))
    except (DrawingError, TypeError, ValueError) as exc:
        st.session_state["dr_error"] = str(exc)


def _delete(store: DrawingStore, drawing_id: str) -> None:
    try:
        store.delete(drawing_id)
    except DrawingError as exc:
        st.session_state["dr_error"] = str(exc)


def gallery(store: DrawingStore, drawings: list, images: np.ndarray, predictions: np.ndarray | None) -> None:
    """The drawings by digit, each with its label (and the model's answer) and a menu to relabel or delete."""
    if err := st.session_state.pop("dr_error", None):
        st.error(err)
    counts = np.bincount([d.label for d in drawings], minlength=10)
    options = [ALL, *[d for d in range(10) if counts[d]]]
    pick = st.segmented_control(
        "Show",
        options,
        default=ALL,
        key="dr_filter",
        format_func=lambda o: f"All ({len(drawings)})" if o == ALL else f"{o} ({counts[o]})",
    )
    shown = [i for i, d in enumerate(drawings) if pick in (None, ALL) or d.label == pick]
    with st.container(key="dr_gallery"):
        for start in range(0, len(shown), PER_ROW):
            cols = st.columns(PER_ROW)
            for col, i in zip(cols, shown[start : start + PER_ROW], strict=False):
                d = drawings[i]
                with col, st.container(key=f"dr_item_{d.drawing_id}"):
                    st.image(upscale(images[i], 3))
                    pred = "" if predictions is None else f" · model {int(predictions[i])}"
                    st.caption(f"**{d.label}**{pred}")
                    with st.popover("Edit", key=f"dr_edit_{d.drawing_id}"):
                        rk = f"dr_relabel_{d.drawing_id}"
                        st.session_state.setdefault(rk, d.label)
                        st.segmented_control(
                            "Label", list(range(10)), key=rk, on_change=_relabel, args=(store, d.drawing_id, rk)
                        )
                        st.button(
                            "Delete",
                            key=f"dr_del_{d.drawing_id}",
                            icon=":material/delete:",
                            on_click=_delete,
                            args=(store, d.drawing_id),
                        )


def model_on_drawings(store: DrawingStore, run_id: str) -> np.ndarray | None:
    """The active model's accuracy, confusion matrix and mistakes on the drawings; its predictions."""
    loaded = cache.get_model(run_id)
    if loaded is None:
        return None
    try:
        ev, drawings = evaluate_drawings(loaded[0], store)
    except DrawingError:
        return None
    wrong = np.flatnonzero(ev.labels != ev.predictions)
    with st.container(border=True, key="dr_eval"):
        left, right = st.columns([1, 2])
        left.metric(
            "Active model on your drawings",
            f"{ev.accuracy:.1%}",
            help=f"{len(drawings) - len(wrong)} of {len(drawings)} right",
        )
        left.caption(f"On MNIST's test set: {loaded[1].test_accuracy:.2%}")
        if len(wrong):
            left.markdown(f"**The {len(wrong)} it gets wrong** (your label → its answer):")
            images, _, _ = store.arrays(drawings)
            with left.container(key="dr_wrong"):
                st.html(html_grid(images[wrong], [f"{ev.labels[i]} → {ev.predictions[i]}" for i in wrong], wrong))
        else:
            left.success("It reads every one of them.")
        right.plotly_chart(confusion_figure(ev.confusion), key="dr_cm", config={"displayModeBar": False})
    return ev.predictions


def _fine_tune_work(
    task: Any, stop: Any, runs: Any, run_id: str, data, store: DrawingStore, epochs: int
) -> FineTuneResult | None:
    """The fine-tune task (runs in its own process, see ui/tasks.py)."""
    task.progress(0.0, "Fine-tuning…")
    return fine_tune_on_drawings(
        runs, run_id, data, store, epochs=epochs, on_event=task.on_train_event, stop=stop, source="dashboard"
    )


def fine_tune(store: DrawingStore, run_id: str) -> None:
    """'Fine-tune on my drawings': continue the active run with the drawings mixed in, as a new run."""
    sid = session.session_id()
    task = TASKS.get(sid, FINE_TUNE)
    with st.container(border=True, key="dr_ft"):
        st.markdown(
            "**Fine-tune on my drawings** — continue the active model for a few epochs of MNIST with your "
            "drawings mixed in (each repeated so they make ~10 % of the images). The result is a new run; "
            "the active model stays as it is."
        )
        owner = next((r.owner for r in cache.list_runs() if r.run_id == run_id), None)
        if not auth.may_change(owner):
            st.caption(
                "Fine-tuning continues the active model, which is "
                f"{owner.display if owner else 'not yours'}'s: only its owner (or an instructor) can. "
                "Make one of your models active to fine-tune it."
            )
            if task is not None:
                _task_progress(task, "dr_ft")
            return
        store_runs = cache.store()
        if session.quota_full(store_runs):
            return
        c = st.columns([1, 1, 3])
        epochs = c[0].number_input("Epochs", 1, 10, 1, key="dr_ft_epochs")
        if c[1].button(
            "Fine-tune",
            key="dr_ft_start",
            type="primary",
            icon=":material/tune:",
            disabled=task is not None and task.running,
        ):
            try:
                task = TASKS.start(
                    sid, FINE_TUNE, _fine_tune_work, store_runs, run_id, cache.get_data(), store, int(epochs)
                )
            except JobError as exc:
                st.error(str(exc))
        if task is not None:
            _task_progress(task, "dr_ft")


def _task_progress(task: Task, key: str) -> None:
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
            st.error(f"Fine-tuning failed: {snap.error}")
        elif snap.status == Status.FINISHED and snap.result is not None:
            _compare(snap.result)
        else:
            st.info("Stopped; nothing was saved.")

    _live()


def _compare(r: FineTuneResult) -> None:
    with st.container(key="dr_ft_result"):
        st.markdown(f"Fine-tuned on {r.count} drawings → run `{r.run.run_id}` (continues `{r.parent.run_id}`).")
        if r.unsaved:
            st.warning(f"{r.unsaved}; it was saved in {r.run.path} instead: copy that folder into the runs folder")
        a, b = st.columns(2)
        a.metric(
            "Your drawings",
            f"{r.drawings_after:.1%}",
            f"{(r.drawings_after - r.drawings_before) * 100:+.1f} points (was {r.drawings_before:.1%})",
        )
        b.metric(
            "MNIST test",
            f"{r.mnist_after:.2%}",
            f"{(r.mnist_after - r.mnist_before) * 100:+.2f} points (was {r.mnist_before:.2%})",
        )
        active = session.active_run_id() == r.run.run_id
        st.button(
            "This is the active model" if active else "Make it the active model",
            key="dr_ft_activate",
            disabled=active,
            on_click=session.set_active,
            args=(r.run.run_id,),
        )


def export_import(store: DrawingStore, count: int) -> None:
    """Download the collection as a zip; import one (refused whole, with the reason, when anything is wrong)."""
    with st.expander("Export / import", icon=":material/archive:"):
        if count:
            st.download_button(
                "Download my drawings (zip)",
                store.export_zip(),
                file_name="my-drawings.zip",
                mime="application/zip",
                key="dr_export",
                icon=":material/download:",
            )
        z = st.file_uploader(
            "Import a zip exported from MNIST Lab", type=["zip"], key="dr_import", max_upload_size=MAX_ZIP_BYTES >> 20
        )
        if z is not None and st.button("Import", key="dr_import_go"):
            try:
                report = store.import_zip(z.getvalue())
            except DrawingError as exc:
                st.error(f"Nothing was imported: {exc}")
            else:
                st.success(
                    f"Imported {report.added} drawings"
                    + (f" ({report.skipped} were already here)." if report.skipped else ".")
                )
