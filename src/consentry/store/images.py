"""Persistence of image analyses (faces with embeddings, NSFW score, PDQ) for hub previews and
local images, so an image is fetched and analysed once and `person find` can search every face."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from consentry.store.database import Database, iter_vector_rows
from consentry.store.records import from_json, to_json, utc_now

EMBEDDING_DIM = 128


@dataclass
class StoredFace:
    id: int
    box: tuple[int, int, int, int]
    score: float | None
    embedding: np.ndarray


@dataclass
class StoredAnalysis:
    id: int
    ref: str
    hub: str | None
    model_remote_id: str | None
    url: str | None
    sha256: str | None
    width: int | None
    height: int | None
    faces_total: int
    nsfw: float | None
    pdq: str | None
    pdq_quality: int | None
    problem: str | None
    analysed_at: str
    faces: list[StoredFace] = field(default_factory=list)
    pdq_dihedral: list[str] | None = None  # the 8 (consentry.images.pdq.DIHEDRAL_NAMES order); None if analysed before


def _vector(blob: Any) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


class ImageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, ref: str, *, hub: str | None, model_remote_id: str | None, url: str | None, sha256: str | None,
            width: int | None, height: int | None, faces_total: int, nsfw: float | None, pdq: str | None,
            pdq_quality: int | None, problem: str | None,
            faces: Sequence[tuple[tuple[int, int, int, int], float | None, np.ndarray]] = (),
            pdq_dihedral: Sequence[str] | None = None) -> int:  # fmt: skip
        """Record (or replace) the analysis of ``ref`` and its faces (box, score, embedding)."""
        with self.db.transaction():
            self.db.execute("DELETE FROM image_analyses WHERE ref = ?", (ref,))  # its faces go with it
            analysis_id = self.db.insert(
                "INSERT INTO image_analyses (ref, hub, model_remote_id, url, sha256, width, height, faces_total, nsfw, pdq,"
                " pdq_quality, problem, analysed_at, pdq_dihedral) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ref, hub, model_remote_id, url, sha256, width, height, faces_total, nsfw, pdq, pdq_quality, problem, utc_now(),
                 " ".join(pdq_dihedral) if pdq_dihedral else None),
            )  # fmt: skip
            self.db.executemany(
                "INSERT INTO image_faces (analysis_id, face_index, box, score, embedding) VALUES (?, ?, ?, ?, ?)",
                [(analysis_id, i, to_json(list(map(int, box))), score, np.ascontiguousarray(emb, dtype="<f4").tobytes())
                 for i, (box, score, emb) in enumerate(faces)],
            )  # fmt: skip
        return analysis_id

    def get(self, ref: str) -> StoredAnalysis | None:
        row = self.db.query_one("SELECT * FROM image_analyses WHERE ref = ?", (ref,))
        return self._with_faces([row])[0] if row else None

    def for_model(self, hub: str, model_remote_id: str) -> list[StoredAnalysis]:
        rows = self.db.query("SELECT * FROM image_analyses WHERE hub = ? AND model_remote_id = ? ORDER BY ref",
                             (hub, model_remote_id))  # fmt: skip
        return self._with_faces(rows)

    def face(self, face_id: int) -> tuple[StoredAnalysis, StoredFace] | None:
        row = self.db.query_one("SELECT * FROM image_faces WHERE id = ?", (face_id,))
        if row is None:
            return None
        analysis = self.db.query_one("SELECT * FROM image_analyses WHERE id = ?", (row["analysis_id"],))
        return _analysis(analysis), _face(row)

    def faces_by_id(self, face_ids: Sequence[int]) -> dict[int, tuple[StoredAnalysis, StoredFace]]:
        """Many faces with their images, in a few queries (what a person search needs)."""
        out: dict[int, tuple[StoredAnalysis, StoredFace]] = {}
        ids = list(dict.fromkeys(int(i) for i in face_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.query(
                "SELECT f.id AS face_id, f.face_index, f.box, f.score, f.embedding, a.* FROM image_faces f"
                f" JOIN image_analyses a ON a.id = f.analysis_id WHERE f.id IN ({marks})", chunk)  # fmt: skip
            for r in rows:
                face = StoredFace(r["face_id"], tuple(from_json(r["box"], [])), r["score"], _vector(r["embedding"]))
                out[r["face_id"]] = (_analysis(r), face)
        return out

    def max_face_id(self) -> int:
        return int(self.db.query_one("SELECT max(id) AS m FROM image_faces")["m"] or 0)

    def iter_face_vectors(self, after_id: int = 0, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(face ids, embeddings) in batches, for the vector index."""
        return iter_vector_rows(self.db, "image_faces", "embedding", after_id, batch)

    def count(self) -> tuple[int, int]:
        """(images analysed, faces stored)."""
        a = self.db.query_one("SELECT count(*) AS n FROM image_analyses")["n"]
        f = self.db.query_one("SELECT count(*) AS n FROM image_faces")["n"]
        return int(a), int(f)

    def _with_faces(self, rows: Sequence[Any]) -> list[StoredAnalysis]:
        out = [_analysis(r) for r in rows]
        by_id = {a.id: a for a in out}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for f in self.db.query(f"SELECT * FROM image_faces WHERE analysis_id IN ({marks}) ORDER BY face_index", chunk):
                by_id[f["analysis_id"]].faces.append(_face(f))
        return out


def _analysis(r: Any) -> StoredAnalysis:
    return StoredAnalysis(
        id=r["id"], ref=r["ref"], hub=r["hub"], model_remote_id=r["model_remote_id"], url=r["url"], sha256=r["sha256"],
        width=r["width"], height=r["height"], faces_total=r["faces_total"], nsfw=r["nsfw"], pdq=r["pdq"],
        pdq_quality=r["pdq_quality"], problem=r["problem"], analysed_at=r["analysed_at"],
        pdq_dihedral=r["pdq_dihedral"].split() if r["pdq_dihedral"] else None,
    )  # fmt: skip


def _face(r: Any) -> StoredFace:
    return StoredFace(r["id"], tuple(from_json(r["box"], [])), r["score"], _vector(r["embedding"]))
