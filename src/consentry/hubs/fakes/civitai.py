"""A local fake of Civitai's public REST API v1, for tests, benchmarks and the demo.

It replays response shapes written from ``shared/reference/hub-interfaces.md`` §1 (real captured
payloads), including the quirks a client must survive (§1.6): ``nextCursor`` as a number on one
endpoint and a string on another, ``null`` stats, seeds above 2^63, nested ``{id, meta}``, 404
shapes, the ``page*limit > 1000`` error. Files attached to the world (:meth:`CivitaiWorld.attach_file`)
are served by ``/api/download/models/{versionId}`` with Range support. Faults (slowness, dropped
connections, truncated bodies, a wrong Content-Length, 429 without Retry-After, 503 with it) are
injected on the wire by :mod:`consentry.hubs.fakes.serving`.

The world is a deterministic, seeded catalogue (:func:`civitai_world`); the fake reads it live,
so a test can add models between two crawls.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consentry.hubs.fakes.serving import FakeServer, range_response, serve_forever

SITE = "https://civitai.com"
IMAGE_HOST = "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA"
NSFW_BITS = (1, 2, 4, 8, 16)  # PG, PG13, R, X, XXX (32 = Blocked is never public)
DEPRECATED_NSFW = {1: "None", 2: "Soft", 4: "Mature", 8: "X", 16: "X", 32: "Blocked"}
MAX_INT4 = 2147483647

# --- the world ------------------------------------------------------------------------------------

_FIRST = ["Mira", "Ilse", "Tomas", "Anouk", "Dario", "Nella", "Katya", "Orrin", "Selma", "Bastien", "Liora", "Yusuf"]
_LAST = ["Castellan", "Verhoeven", "Lindqvist", "Okafor", "Marchetti", "Halloran", "Drozdova", "Pereira", "Nakamura"]
_STYLES = ["Ink Wash", "Retro Anime", "Cinematic Film", "Watercolor", "Pixel Art", "Isometric Rooms", "Neon Noir"]
_THINGS = ["Armor", "Cyber Jacket", "Botanical Poster", "Tiny Robots", "Castle Interiors", "Vintage Cars"]
_TYPES = ["LORA"] * 6 + ["Checkpoint"] * 2 + ["TextualInversion", "LoCon", "DoRA"]
_BASES = ["SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "Flux.1 D", "Krea 2"]
_USERS = ["Konan", "pixelwright", "ashgrove", "lumen_lab", "mossy", "quietfox", "render_raccoon", "vexel"]
_SAMPLERS = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE"]


@dataclass
class CivitaiWorld:
    """A seeded catalogue. ``models`` holds the full objects (versions with every image and its
    meta); ``deleted`` ids answer 404 everywhere, like models removed in a deletion wave."""

    seed: int
    now: dt.datetime
    models: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    file_paths: dict[int, Path] = field(default_factory=dict)  # file id -> bytes served by downloads
    image_paths: dict[int, Path] = field(default_factory=dict)  # image id -> bytes served at its CDN path
    revision: int = 0  # bumped by every change, so the fake's caches know to rebuild
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _next_id: dict[str, int] = field(default_factory=dict, repr=False)

    def listed(self, *, nsfw: bool = True, types: list[str] | None = None, query: str | None = None,
               sort: str = "Newest", period: str = "AllTime") -> list[dict[str, Any]]:  # fmt: skip
        """The models ``GET /api/v1/models`` lists for these filters, in order. Like Civitai, it
        never lists person-of-interest (poi) models, deleted ones, or unrated ones (nsfwLevel 0)."""
        level = 31 if nsfw else 1
        wanted = {t.lower() for t in types} if types else None
        cutoff = _period_start(self.now, period)
        out = []
        for model in self.models.values():
            if model["id"] in self.deleted or model["poi"] or not model["nsfwLevel"] & level:
                continue
            if wanted and model["type"].lower() not in wanted:
                continue
            if query and query.lower() not in (model["name"] + " " + " ".join(model["tags"])).lower():
                continue
            if cutoff and last_version_at(model) < cutoff:
                continue
            out.append(model)
        return sorted(out, key=_SORTS.get(sort, _SORTS["Highest Rated"]))

    def attach_file(self, model_id: int, path: Path, *, name: str | None = None) -> dict[str, Any]:
        """Make ``path`` the primary file of the model's newest version: its real hashes in the
        API (AutoV3 in the 12-hex form 2026 payloads show) and its bytes behind the download URL."""
        from consentry.identity.identify import identify

        ident = identify(path)
        h = ident.hashes
        version = self.models[model_id]["modelVersions"][0]
        f = version["files"][0]
        hashes = {"AutoV1": h.autov1, "AutoV2": h.autov2, "SHA256": h.sha256, "CRC32": h.crc32, "BLAKE3": h.blake3,
                  "AutoV3": h.autov3_short}  # fmt: skip
        f.update(name=name or Path(path).name, sizeKB=ident.size / 1024, hashes={k: v for k, v in hashes.items() if v},
                 metadata={"format": "SafeTensor", "fp": "fp16", "isRequired": False})  # fmt: skip
        self.file_paths[f["id"]] = Path(path)
        self.revision += 1
        return f

    def delete(self, model_ids: set[int]) -> None:
        """A deletion wave: these models answer 404 and leave every listing from now on."""
        self.deleted |= set(model_ids)
        self.revision += 1

    def add_models(self, count: int, *, days_later: float = 1.0) -> list[int]:
        """Publish ``count`` new models after the world's current ``now`` (for incremental crawls)."""
        self.now += dt.timedelta(days=days_later)
        self.revision += 1
        return [self._make_model(self.now - dt.timedelta(minutes=10 * i)) for i in range(count)]

    # --- generation ---------------------------------------------------------------------------

    def _id(self, kind: str, start: int) -> int:
        value = self._next_id.get(kind, start) + self._rng.randint(1, 9)
        self._next_id[kind] = value
        return value

    def _hex(self, chars: int) -> str:
        return f"{self._rng.getrandbits(chars * 4):0{chars}X}"

    def _make_model(self, published: dt.datetime) -> int:
        rng = self._rng
        model_id = self._id("model", 2_800_000)
        mtype = rng.choice(_TYPES)
        person = mtype in ("LORA", "LoCon", "DoRA") and rng.random() < 0.3
        if person:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            name = f"{first} {last} - {rng.choice(['realistic', 'likeness', 'v2', 'SDXL'])}"
            tags = ["woman" if rng.random() < 0.7 else "man", "celebrity", "realistic", "person"]
            trigger = f"{first.lower()}{last.lower()[:3]}"
        else:
            name = f"{rng.choice(_STYLES + _THINGS)} {rng.choice(['LoRA', 'Style', 'XL', 'v1'])}"
            tags = rng.sample(["style", "concept", "clothing", "anime", "landscape", "objects", "character"], 3)
            trigger = name.split()[0].lower()
        gaps = [dt.timedelta(days=rng.randint(1, 30)) for _ in range(rng.choice([1, 1, 1, 2, 3]) - 1)]
        at = published - sum(gaps, dt.timedelta())  # the last version is published at `published`
        versions = []
        for index, gap in enumerate([*gaps, dt.timedelta()]):
            versions.append(self._make_version(index, model_id, mtype, trigger, at))
            at += gap
        versions.reverse()  # Civitai lists the newest version first (index 0)
        for index, version in enumerate(versions):
            version["index"] = index
        level = 0
        for version in versions:
            level |= version["nsfwLevel"]
        nsfw = rng.random() < 0.1
        stats_hidden = rng.random() < 0.15
        user = rng.choice(_USERS)
        self.models[model_id] = {
            "id": model_id, "name": name, "description": f"<p>{name}. Trained on {versions[0]['baseModel']}.</p>",
            "allowNoCredit": rng.random() < 0.7,
            # quirk §1.6.1: an array now, a set-notation string on older records
            "allowCommercialUse": ["Image", "RentCivit"] if rng.random() < 0.8 else "{Image,RentCivit,Rent,Sell}",
            "allowDerivatives": True, "allowDifferentLicense": rng.random() < 0.5,
            "type": mtype, "minor": False, "sfwOnly": False,
            "poi": person and rng.random() < 0.25, "nsfw": nsfw, "nsfwLevel": 60 if nsfw else level,
            "availability": "Public", "userId": 100_000 + _USERS.index(user),
            "cosmetic": None, "supportsGeneration": rng.random() < 0.5,
            "stats": {  # quirk §1.6.2: null counters (new models, hidden downloads)
                "downloadCount": None if stats_hidden else rng.randint(0, 50_000),
                "thumbsUpCount": rng.randint(0, 3000), "thumbsDownCount": rng.randint(0, 20),
                "commentCount": rng.randint(0, 200), "tippedAmountCount": None if stats_hidden else rng.randint(0, 500),
            } if rng.random() > 0.05 else {"downloadCount": None, "thumbsUpCount": None, "thumbsDownCount": None,
                                           "commentCount": None, "tippedAmountCount": None},
            "creator": {"username": user, "image": f"{IMAGE_HOST}/{self._uuid()}/width=96/{user}.jpeg"},
            "tags": tags,
            "modelVersions": versions,
        }  # fmt: skip
        return model_id

    def _uuid(self) -> str:
        h = self._hex(32).lower()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _make_version(self, index: int, model_id: int, mtype: str, trigger: str, at: dt.datetime) -> dict[str, Any]:
        rng = self._rng
        version_id = self._id("version", 3_200_000)
        base = rng.choice(_BASES)
        images = [self._make_image(version_id, base, trigger, at) for _ in range(rng.randint(2, 8))]
        level = 0
        for image in images:
            level |= image["nsfwLevel"]
        files = [self._make_file(version_id, mtype, trigger, primary=True)]
        if rng.random() < 0.3:
            files.append(self._make_file(version_id, mtype, trigger, primary=False))
        return {
            "id": version_id, "index": index, "name": f"v{index + 1}.0", "baseModel": base,
            "baseModelType": "Standard", "publishedAt": _iso(at), "flags": 0, "availability": "Public",
            "nsfwLevel": level, "description": None if rng.random() < 0.6 else "<p>Better likeness.</p>",
            "trainedWords": [trigger] + ([f"{trigger}, portrait"] if rng.random() < 0.4 else []),
            "vaeId": None, "paidAccess": None,
            "stats": {"downloadCount": rng.randint(0, 9000), "thumbsUpCount": rng.randint(0, 900), "thumbsDownCount": 0},
            "supportsGeneration": True, "files": files, "images": images,
            "downloadUrl": f"{SITE}/api/download/models/{version_id}",
        }  # fmt: skip

    def _make_file(self, version_id: int, mtype: str, trigger: str, *, primary: bool) -> dict[str, Any]:
        rng = self._rng
        file_id = self._id("file", 3_100_000)
        size_kb = rng.choice([1.5, 18.25, 37_000.125, 223_231.3515625, 2_082_642.5]) if mtype != "Checkpoint" else 6_775_432.5
        sha = self._hex(64)
        hashes = {"AutoV1": self._hex(8), "AutoV2": sha[:10], "SHA256": sha, "CRC32": self._hex(8),
                  "BLAKE3": self._hex(64), "AutoV3": self._hex(12 if rng.random() < 0.8 else 64)}  # fmt: skip
        if size_kb < 2048:
            del hashes["AutoV1"]  # quirk §1.6.4: no AutoV1 for files under 2 MiB
        kind = "Model" if primary else rng.choice(["Training Data", "Pruned Model"])
        name = f"{trigger}_{kind.split()[0].lower()}.{'zip' if kind == 'Training Data' else 'safetensors'}"
        return {
            "id": file_id, "sizeKB": size_kb, "name": name, "overrideName": None, "type": kind,
            "pickleScanResult": "Success", "pickleScanMessage": None, "virusScanResult": "Success",
            "virusScanMessage": None, "scannedAt": "2026-08-11T21:20:28.450Z",
            "metadata": {"format": "Other" if kind == "Training Data" else "SafeTensor",
                         "fp": rng.choice(["fp16", "bf16", None]), "isRequired": False},
            "hashes": hashes,
            "downloadUrl": f"{SITE}/api/download/models/{version_id}" + ("" if primary else f"?fileId={file_id}"),
            "primary": primary,
        }  # fmt: skip

    def _make_image(self, version_id: int, base: str, trigger: str, at: dt.datetime) -> dict[str, Any]:
        rng = self._rng
        image_id = self._id("image", 139_000_000)
        width, height = rng.choice([(768, 1152), (832, 1216), (1024, 1024), (1776, 2368)])
        seed = rng.getrandbits(64) if rng.random() < 0.2 else rng.randint(0, 2**32 - 1)  # quirk: seeds above 2^63
        meta = {
            "prompt": f"{trigger}, portrait, detailed skin, soft light", "negativePrompt": "lowres, bad hands",
            "steps": rng.choice([8, 20, 25, 30]), "cfgScale": rng.choice([1, 4, 5, 7]), "sampler": rng.choice(_SAMPLERS),
            "seed": seed, "Size": f"{width}x{height}", "clipSkip": 2,
            "hashes": {"model": self._hex(10).lower(), f"lora:{trigger}": self._hex(10).lower()},
            "civitaiResources": [{"type": "lora", "weight": 0.8, "modelVersionId": version_id}],
        }  # fmt: skip
        created = at + dt.timedelta(minutes=rng.randint(1, 600))
        return {
            "id": image_id, "url": f"{IMAGE_HOST}/{self._uuid()}/original=true/{image_id}.jpeg",
            "nsfwLevel": rng.choice([1, 1, 1, 2, 2, 4, 8, 16]), "width": width, "height": height,
            "hash": "U2BW6.ov03_30exH=Cxt00xt~p0M8^NftAn2", "type": "image", "minor": False,
            "poi": rng.random() < 0.03, "hasMeta": True, "hasPositivePrompt": True, "onSite": False, "remixOfId": None,
            "createdAt": _iso(created), "postId": 1_980_000 + image_id % 100_000, "baseModel": base,
            "stats": {"cryCount": rng.randint(0, 50), "laughCount": 0, "likeCount": rng.randint(0, 900),
                      "dislikeCount": 0, "heartCount": rng.randint(0, 300), "commentCount": None},
            "meta": None if rng.random() < 0.1 else meta,  # hidden by the uploader
            "modelVersionId": version_id,
        }  # fmt: skip


def civitai_world(seed: int = 0, n_models: int = 50, *, deleted_fraction: float = 0.05) -> CivitaiWorld:
    """A deterministic world of ``n_models`` models (same seed, same world, byte for byte)."""
    world = CivitaiWorld(seed=seed, now=dt.datetime(2026, 8, 20, tzinfo=dt.timezone.utc), _rng=random.Random(seed))
    for i in range(n_models):
        world._make_model(world.now - dt.timedelta(hours=3 * i + world._rng.random()))
    rng = random.Random(seed + 1)
    world.deleted = {mid for mid in world.models if rng.random() < deleted_fraction}
    return world


def last_version_at(model: dict[str, Any]) -> str:
    """Civitai's ``lastVersionAt``, which ``sort=Newest`` orders by (ISO strings compare as times)."""
    return max(v["publishedAt"] for v in model["modelVersions"])


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _period_start(now: dt.datetime, period: str) -> str | None:
    days = {"Day": 1, "Week": 7, "Month": 30, "Year": 365}.get(period)
    return _iso(now - dt.timedelta(days=days)) if days else None


def _count(value: int | None) -> int:
    return value or 0


_SORTS = {
    "Newest": lambda m: (_neg_iso(last_version_at(m)), -m["id"]),
    "Oldest": lambda m: (last_version_at(m), m["id"]),
    "Highest Rated": lambda m: (-_count(m["stats"]["thumbsUpCount"]), -m["id"]),
    "Most Downloaded": lambda m: (-_count(m["stats"]["downloadCount"]), -m["id"]),
}


def _neg_iso(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


# --- response shapes ------------------------------------------------------------------------------


def listing_item(model: dict[str, Any]) -> dict[str, Any]:
    """A model as ``/models`` lists it: version images carry no ``meta`` (and no post fields)."""
    item = dict(model)
    item["baseModels"] = sorted({v["baseModel"] for v in model["modelVersions"]})
    item["modelVersions"] = [
        {**v, "images": [_embedded_image(i) for i in v["images"] if not i["poi"]]} for v in model["modelVersions"]
    ]
    return item


_EMBEDDED_KEYS = ("id", "url", "nsfwLevel", "width", "height", "hash", "type", "minor", "poi", "hasMeta",
                  "hasPositivePrompt", "onSite", "remixOfId")  # fmt: skip


def _embedded_image(image: dict[str, Any]) -> dict[str, Any]:
    return {k: image[k] for k in _EMBEDDED_KEYS}


def version_detail(model: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """``/model-versions/{id}`` shape: ``modelId``, ``model{}``, up to 10 images with meta but no id."""
    out = {k: v for k, v in version.items() if k not in ("index", "images", "flags")}
    out.update(modelId=model["id"], status="Published", createdAt=version["publishedAt"], uploadType="Created",
               air=f"urn:air:sdxl:{model['type'].lower()}:civitai:{model['id']}@{version['id']}",
               model={"name": model["name"], "type": model["type"], "nsfw": model["nsfw"], "poi": model["poi"]})  # fmt: skip
    out["images"] = [
        {**{k: v for k, v in _embedded_image(i).items() if k != "id"}, "availability": "Public",
         "metadata": {"hash": i["hash"], "width": i["width"], "height": i["height"]}, "meta": i["meta"]}
        for i in version["images"][:10]
    ]  # fmt: skip
    return out


def shaped_image(image: dict[str, Any], model: dict[str, Any], *, with_meta: bool, nested: bool) -> dict[str, Any]:
    """``/images`` item: deprecated string ``nsfwLevel`` plus numeric ``browsingLevel``."""
    meta = image["meta"] if with_meta else None
    if nested and meta is not None:
        meta = {"id": image["id"], "meta": meta}  # quirk §1.6.6: legacy path nests meta
    return {
        "id": image["id"], "url": image["url"], "hash": image["hash"], "width": image["width"], "height": image["height"],
        "nsfwLevel": DEPRECATED_NSFW.get(image["nsfwLevel"], "None"), "type": "image", "nsfw": image["nsfwLevel"] > 1,
        "browsingLevel": image["nsfwLevel"], "createdAt": image["createdAt"], "postId": image["postId"],
        "stats": image["stats"], "meta": meta, "username": model["creator"]["username"], "baseModel": image["baseModel"],
        "modelVersionIds": [image["modelVersionId"]],
    }  # fmt: skip


# --- the app ------------------------------------------------------------------------------------


@dataclass
class Shapes:
    """Response shapes a client must accept (the quirks are not faults, only variety).

    ``cursor_style`` forces ``"number"`` or ``"string"`` cursors on ``/models`` (default: the
    composite ``"id|offset"`` string, or a plain number string with ``query``); ``page_mode``
    answers a cursor-less first ``/models`` request in page mode (``nextPage`` only)."""

    cursor_style: str | None = None
    page_mode: bool = False


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _page(items: bytes, metadata: dict[str, Any]) -> Response:
    """A listing page from items serialised once (serving is then a join, not a dump)."""
    body = b'{"items":[' + items + b'],"metadata":' + json.dumps(metadata, separators=(",", ":")).encode() + b"}"
    return Response(body, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


class _Cache:
    """Serialised listing items and sorted image rows, rebuilt when the world changes size.

    Serving a page is then a join of ready bytes, so the fake is not what a crawl benchmark
    measures."""

    def __init__(self, world: CivitaiWorld) -> None:
        self.world = world
        self.key: tuple[int, ...] = (-1,)
        self.items: dict[int, bytes] = {}
        self.versions: dict[int, tuple[dict, dict]] = {}
        self.hashes: dict[str, tuple[dict, dict]] = {}
        self.images: dict[tuple[int, str | None], list[tuple[dict, dict]]] = {}
        self.shaped: dict[tuple[int, bool, bool], bytes] = {}
        self.listings: dict[tuple, list[dict]] = {}

    def fresh(self) -> "_Cache":
        key = (self.world.revision, len(self.world.models), len(self.world.deleted))
        if key != self.key:
            self.key, self.items, self.images, self.shaped, self.listings = key, {}, {}, {}, {}
            self.versions, self.hashes = {}, {}
            for model in self.world.models.values():
                for version in model["modelVersions"]:
                    self.versions[version["id"]] = (model, version)
                    for f in version["files"]:
                        for value in f["hashes"].values():
                            self.hashes.setdefault(value.upper(), (model, version))
        return self

    def listing(self, **filters: Any) -> list[dict[str, Any]]:
        key = tuple(sorted(filters.items()))
        rows = self.listings.get(key)
        if rows is None:
            rows = self.listings[key] = self.world.listed(**{**filters, "types": list(filters["types"] or []) or None})
        return rows

    def item(self, model: dict[str, Any]) -> bytes:
        data = self.items.get(model["id"])
        if data is None:
            data = self.items[model["id"]] = json.dumps(listing_item(model), separators=(",", ":"), ensure_ascii=False).encode()
        return data

    def image_item(self, image: dict[str, Any], model: dict[str, Any], with_meta: bool, nested: bool) -> bytes:
        key = (image["id"], with_meta, nested)
        data = self.shaped.get(key)
        if data is None:
            item = shaped_image(image, model, with_meta=with_meta, nested=nested)
            data = self.shaped[key] = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        return data

    def image_rows(self, level: int, sort: str | None) -> list[tuple[dict, dict]]:
        """Every public image of every live model at ``level``, in the feed's order."""
        rows = self.images.get((level, sort))
        if rows is None:
            rows = [(m, i) for m, v in self.versions.values() if m["id"] not in self.world.deleted
                    for i in v["images"] if i["nsfwLevel"] & level and not i["poi"] and not i["minor"]]  # fmt: skip
            if sort == "Newest":
                rows.sort(key=lambda r: (_neg_iso(r[1]["createdAt"]), -r[1]["id"]))
            self.images[(level, sort)] = rows
        return rows


def create_fake_civitai(world: CivitaiWorld, shapes: Shapes | None = None) -> Starlette:
    """The fake as an ASGI app (serve it with :func:`fake_civitai` or ``FakeServer``)."""
    shapes = shapes or Shapes()
    cache = _Cache(world)

    def paged(request: Request, rows: list[Any], max_limit: int, default_cursor: str) -> tuple[Response | None, list, dict]:
        """Slice ``rows`` by cursor or page; returns (error, rows of the page, metadata)."""
        q = request.query_params
        try:
            limit = int(q.get("limit", 100))
            if not 0 < limit <= max_limit:
                raise ValueError
        except ValueError:
            return _error(400, f"limit: Number must be between 1 and {max_limit}"), [], {}
        page_param = q.get("page")
        if page_param is not None:
            if q.get("query"):
                return _error(400, "Cannot use page param with query search. Use cursor-based pagination."), [], {}
            page = _number(page_param, "page")
            if page * limit > 1000:
                return _error(429, "You've requested too many pages, please use cursors instead"), [], {}
            offset = (page - 1) * limit
        else:
            offset = _decode_cursor(q.get("cursor"))
            page = offset // limit + 1
        chunk = rows[offset : offset + limit]
        metadata: dict[str, Any] = {}
        more = offset + limit < len(rows)
        params = [(k, v) for k, v in q.multi_items() if k not in ("cursor", "page")]
        if page_param is not None or (shapes.page_mode and request.url.path.endswith("/models")):
            metadata.update(currentPage=page, pageSize=limit)
            if more:
                metadata["nextPage"] = f"{SITE}{request.url.path}?{urlencode(params + [('page', page + 1)])}"
        elif more:
            style = shapes.cursor_style or default_cursor
            if q.get("query") and style == "composite":
                style = "string"  # Meilisearch path: String(offset + limit)
            cursor = _encode_cursor(offset + limit, style, chunk[-1])
            metadata["nextCursor"] = cursor
            metadata["nextPage"] = f"{SITE}{request.url.path}?{urlencode(params + [('cursor', cursor)])}"
        return None, chunk, metadata

    async def models(request: Request) -> Response:
        q = request.query_params
        if (q.get("favorites") or q.get("hidden")) and not request.headers.get("authorization"):
            return _error(401, "Unauthorized")
        types = tuple(t for v in q.getlist("types") for t in v.split(",") if t)
        fresh = cache.fresh()
        rows = fresh.listing(nsfw=q.get("nsfw", "false").lower() == "true", types=types or None, query=q.get("query"),
                             sort=q.get("sort", "Highest Rated"), period=q.get("period", "AllTime"))  # fmt: skip
        error, chunk, metadata = paged(request, rows, 100, "composite")
        if error:
            return error
        return _page(b",".join(fresh.item(m) for m in chunk), metadata)

    async def model(request: Request) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_INT4:
            return _error(400, "id: Expected number, received string")
        m = world.models.get(int(raw))
        if m is None or m["id"] in world.deleted:
            return _error(404, f"No model with id {raw}")
        return _json(listing_item(m))

    def version_response(found: tuple[dict, dict] | None) -> Response:
        if found is None or found[0]["id"] in world.deleted or not found[1]["nsfwLevel"] & 31:
            return _error(404, "Model not found")  # §1.6.8: unrated versions 404 too
        return _json(version_detail(*found))

    async def version(request: Request) -> Response:
        raw = request.path_params["id"]
        return version_response(cache.fresh().versions.get(int(raw)) if raw.isdigit() else None)

    async def by_hash(request: Request) -> Response:
        return version_response(cache.fresh().hashes.get(request.path_params["hash"].upper()))

    async def images(request: Request) -> Response:
        q = request.query_params
        level = _browsing_level(q)
        fresh = cache.fresh()
        if q.get("modelVersionId") or q.get("modelId"):
            if q.get("modelVersionId"):
                found = fresh.versions.get(_number(q["modelVersionId"], "modelVersionId"))
                pairs = [found] if found and found[0]["id"] not in world.deleted else []
            else:
                m = world.models.get(_number(q["modelId"], "modelId"))
                pairs = [(m, v) for v in m["modelVersions"]] if m and m["id"] not in world.deleted else []
            rows = [(m, i) for m, v in pairs for i in v["images"] if i["nsfwLevel"] & level and not i["poi"] and not i["minor"]]
            if q.get("sort") == "Newest":
                rows.sort(key=lambda r: (_neg_iso(r[1]["createdAt"]), -r[1]["id"]))
        else:
            rows = fresh.image_rows(level, q.get("sort"))
        error, chunk, metadata = paged(request, rows, 200, "number")
        if error:
            return error
        with_meta = q.get("withMeta", "false").lower() == "true"
        nested = bool(q.get("modelId")) and not q.get("modelVersionId") and q.get("flatMeta") != "true"
        items = b",".join(fresh.image_item(i, m, with_meta, nested) for m, i in chunk)
        return _page(items, metadata)

    async def download(request: Request) -> Response:
        """``/api/download/models/{versionId}[?fileId=]``: the file's bytes, honouring Range."""
        found = cache.fresh().versions.get(int(request.path_params["id"])) if request.path_params["id"].isdigit() else None
        if found is None or found[0]["id"] in world.deleted:
            return _error(404, "Model not found")
        file_id = request.query_params.get("fileId")
        files = [f for f in found[1]["files"] if (str(f["id"]) == file_id if file_id else f.get("primary"))]
        path = world.file_paths.get(files[0]["id"]) if files else None
        if path is None:
            return _error(404, "Missing model file")
        return range_response(request, path, files[0]["name"])

    async def image(request: Request) -> Response:
        """The CDN: ``/<key>/<uuid>/original=true/<id>.jpeg`` (point ``--image-base-url`` here)."""
        stem = request.path_params["name"].split(".", 1)[0]
        path = world.image_paths.get(int(stem)) if stem.isdigit() else None
        if path is None:
            return Response(b"not found", status_code=404, media_type="text/plain")
        return range_response(request, path)

    app = Starlette(routes=[
        Route("/api/v1/models", models),
        Route("/api/v1/models/{id}", model),
        Route("/api/v1/model-versions/by-hash/{hash}", by_hash),
        Route("/api/v1/model-versions/{id}", version),
        Route("/api/v1/images", images),
        Route("/api/download/models/{id}", download, methods=["GET", "HEAD"]),
        Route("/{key}/{uuid}/{variant}/{name}", image, methods=["GET", "HEAD"]),
    ], exception_handlers={_BadParameter: _bad_parameter})  # fmt: skip
    return app


def _browsing_level(q: Any) -> int:
    if q.get("browsingLevel"):
        return _number(q["browsingLevel"], "browsingLevel")
    nsfw = q.get("nsfw", "")
    return {"true": 31, "x": 31, "mature": 7, "soft": 3}.get(nsfw.lower(), 1)


def _encode_cursor(offset: int, style: str, last: Any) -> int | str:
    if style == "number":
        return offset
    if style == "composite":
        last_id = last["id"] if isinstance(last, dict) else last[1]["id"]
        return f"{last_id}|{offset}"
    return str(offset)


def _decode_cursor(cursor: str | None) -> int:
    return _number(cursor.rsplit("|", 1)[-1], "cursor") if cursor else 0


class _BadParameter(Exception):
    """A query parameter zod would refuse: the real API answers 400 ``{"error": …}``, never 500."""


def _number(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _BadParameter(f"{name}: Expected number, received nan") from None
    if number < 0:
        raise _BadParameter(f"{name}: Number must be greater than or equal to 0")
    return number


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


def fake_civitai(world: CivitaiWorld, shapes: Shapes | None = None) -> FakeServer:
    """``with fake_civitai(world) as hub:`` the fake on 127.0.0.1 at ``hub.url``."""
    return FakeServer(create_fake_civitai(world, shapes))


def main() -> None:  # pragma: no cover - a manual / benchmark entry point
    """``python -m consentry.hubs.fakes.civitai --models N --seed S --port P``: serve in the foreground."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve_forever(create_fake_civitai(civitai_world(args.seed, args.models)), args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
