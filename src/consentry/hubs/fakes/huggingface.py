"""A local fake of the Hugging Face Hub endpoints that ``huggingface_hub`` uses, for tests and demos.

It serves a small seeded world (:func:`hf_world`) of repos whose files are REAL safetensors files
on disk, so the real client and consentry's range reader talk to it over a real socket:

* ``GET /api/models`` — JSON array, ``search``/``author``/``filter`` (all tags must match),
  ``full``/``cardData``, paginated by a ``Link: <…>; rel="next"`` header with a private cursor;
* ``GET /api/models/{repo}[/revision/{rev}]`` — ``blobs=true`` adds ``size``/``blobId``/``lfs``;
* ``GET /api/models/{repo}/tree/{rev}`` — tree items with ``lfs.oid`` (the sha256);
* ``HEAD/GET /{repo}/resolve/{rev}/{file}`` — single ``Range`` → 206 + ``Content-Range``, 416 when
  unsatisfiable; ``ETag``/``X-Linked-Etag`` (quoted sha256 for LFS files), ``X-Linked-Size``,
  ``X-Repo-Commit``; gated repos answer 401 ``X-Error-Code: GatedRepo`` without a granted token;
* 404 with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``. No ``X-Xet-*``.

Faults (slow responses, dropped connections, truncated bodies, a wrong ``Content-Length``) are
injected on the wire by :mod:`consentry.hubs.fakes.serving`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import numpy as np
from safetensors.numpy import save_file
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consentry.demo.sample_models import kohya_metadata, lora_tensors
from consentry.hubs.fakes.serving import FakeServer, range_response, serve_forever

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
LFS_POINTER_SIZE = 134


@dataclass
class FakeFile:
    name: str
    path: Path  # served from disk so a big synthetic checkpoint costs no memory
    size: int
    sha256: str  # lower hex, the real SHA-256 of the bytes on disk
    lfs: bool

    @property
    def blob_id(self) -> str:  # git blob oid of an LFS pointer would differ; any stable 40-hex will do
        return hashlib.sha1(b"blob " + self.sha256.encode()).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    sha: str
    created_at: str
    card_data: dict[str, Any]
    tags: list[str]
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool | str = False
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str | None = "text-to-image"
    library_name: str | None = "diffusers"

    @property
    def author(self) -> str:
        return self.repo_id.split("/", 1)[0]


@dataclass
class HfWorld:
    root: Path
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    page_size: int = 3
    granted_tokens: set[str] = field(default_factory=set)  # tokens that may read gated repos
    seed: int = 0
    clock: int = 1_772_000_000  # unix time of the next repo created (an hour apart)

    def ordered(self) -> list[FakeRepo]:
        return sorted(self.repos.values(), key=lambda r: (r.created_at, r.repo_id))

    def add_repo(self, repo_id: str, *, base: str | None = SD15, relation: str | None = "adapter",
                 tags: list[str] | tuple[str, ...] = (), gated: bool | str = False) -> FakeRepo:  # fmt: skip
        """A repo as the Hub derives it from its card: ``base_model:…`` tags, ``.gitattributes``."""
        self.clock += 3600
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.clock))
        card: dict[str, Any] = {"license": "openrail", "tags": list(tags)}
        all_tags = ["diffusers", "text-to-image", *tags]
        if base:
            card["base_model"] = base
            all_tags.append(f"base_model:{base}")
            if relation:
                card["base_model_relation"] = relation
                all_tags.append(f"base_model:{relation}:{base}")
        all_tags.append("region:us")
        sha = hashlib.sha1(f"{self.seed}:{repo_id}".encode()).hexdigest()
        downloads = int(hashlib.sha1(repo_id.encode()).digest()[0]) * 20
        repo = FakeRepo(repo_id, sha, created, card, all_tags, gated=gated, downloads=downloads)
        repo.files[".gitattributes"] = _write(self.root, repo_id, ".gitattributes",
                                              raw=b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")  # fmt: skip
        self.repos[repo_id] = repo
        return repo

    def add_file(self, repo: FakeRepo, name: str, *, tensors: dict[str, np.ndarray] | None = None,
                 metadata: dict[str, str] | None = None, raw: bytes | None = None,
                 copy_of: Path | None = None) -> FakeFile:  # fmt: skip
        """Write a file into ``repo`` (tensors, raw bytes, or a copy of a file on disk; a file
        already in place, ``copy_of`` the repo's own path, is served as it is)."""
        if copy_of is not None:
            target = self.root / repo.repo_id / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(copy_of).resolve() != target.resolve():
                shutil.copyfile(copy_of, target)
            repo.files[name] = FakeFile(name, target, target.stat().st_size, _sha256_file(target), lfs=_is_lfs(name))
        else:
            repo.files[name] = _write(self.root, repo.repo_id, name, tensors, metadata, raw)
        return repo.files[name]


# --- the seeded world -------------------------------------------------------------------------


def _write(root: Path, repo_id: str, name: str, tensors: dict[str, np.ndarray] | None = None,
           metadata: dict[str, str] | None = None, raw: bytes | None = None) -> FakeFile:  # fmt: skip
    path = root / repo_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        save_file(tensors or {}, str(path), metadata=metadata)
    return FakeFile(name, path, path.stat().st_size, _sha256_file(path), lfs=_is_lfs(name))


def _is_lfs(name: str) -> bool:
    return name.endswith((".safetensors", ".ckpt", ".bin"))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _malformed_with_trailing_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """A valid file plus bytes the header does not index: huggingface_hub's lenient reader takes
    it, the safetensors crate and consentry refuse it (a polyglot)."""
    from safetensors.numpy import save

    return save(tensors) + b"PK\x03\x04 polyglot tail"


def synthetic_checkpoint(path: Path, *, seed: int = 7, blocks: int = 12, width: int = 320, dtype=np.float16) -> Path:
    """An SD1-style LDM-named checkpoint of ``blocks`` transformer blocks (~``blocks``×8 MiB at
    width 320), big enough to measure what share of its bytes a remote fingerprint fetches."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for b in range(blocks):
        w = width * (1 + b % 4)
        pre = f"model.diffusion_model.input_blocks.{b + 1}.1.transformer_blocks.0."
        for proj, shape in (("attn1.to_q", (w, w)), ("attn1.to_k", (w, w)), ("attn1.to_v", (w, w)),
                            ("attn1.to_out.0", (w, w)), ("attn2.to_q", (w, w)), ("attn2.to_k", (w, 768)),
                            ("attn2.to_v", (w, 768)), ("ff.net.2", (w, 4 * w))):  # fmt: skip
            weights[pre + proj + ".weight"] = (rng.standard_normal(shape) * 0.05).astype(dtype)
        weights[pre + "norm1.weight"] = np.ones(w, dtype=dtype)
        weights[pre + "attn1.to_out.0.bias"] = np.zeros(w, dtype=dtype)
    save_file(weights, str(path))
    return path


def hf_world(seed: int, root: Path, *, extra_repos: int = 4, page_size: int = 3, checkpoint_blocks: int = 0,
             checkpoint_width: int = 320) -> HfWorld:
    """A small Hub: likeness LoRAs (kohya metadata naming fictional people) and their renamed
    re-uploads with metadata stripped, a gated repo, a repo without safetensors, a malformed
    file, ``extra_repos`` unrelated style LoRAs (for pagination), and with ``checkpoint_blocks``
    a synthetic full checkpoint (``fake-org/sd15-finetune``) plus its base (``fake-org/sd15-base``)."""
    world = HfWorld(root=Path(root), page_size=page_size, seed=seed, clock=1_772_000_000 + seed * 1000)
    people = [("10_miracastellan", "mira_castellan_v2"), ("8_tobiasvrell", "tobias_vrell")]
    for i, (folder, output) in enumerate(people):
        tensors = lora_tensors(seed * 10 + i)
        original = world.add_repo(f"uploader{i}/{output}", tags=["lora"])
        world.add_file(original, f"{output}.safetensors", tensors=tensors, metadata=kohya_metadata(folder, output))
        mirror = world.add_repo(f"anon{seed}{i}/LORA" if i == 0 else f"anon{seed}{i}/Test-model", tags=["lora"])
        world.add_file(mirror, "LORA.safetensors", tensors=tensors, metadata={"format": "pt"})
    gated = world.add_repo("gatedorg/restricted-likeness", tags=["lora", "not-for-all-audience"], gated="manual")
    world.add_file(gated, "model.safetensors", tensors=lora_tensors(seed + 77), metadata=kohya_metadata("5_annavoss", "anna_voss"))
    plain = world.add_repo("someorg/readme-only", base=None, relation=None, tags=[])
    world.add_file(plain, "README.md", raw=b"# nothing to see\n")
    broken = world.add_repo("oddball/broken-lora", tags=["lora"])
    world.add_file(broken, "broken.safetensors", raw=_malformed_with_trailing_bytes(lora_tensors(seed + 5)))
    for k in range(extra_repos):
        r = world.add_repo(f"styles{k % 2}/watercolor-{k}", base=SDXL if k % 2 else SD15, tags=["lora", "style"])
        world.add_file(r, "pytorch_lora_weights.safetensors", tensors=lora_tensors(seed * 100 + k),
                       metadata={"ss_output_name": f"watercolor_{k}"})  # fmt: skip
    root, repo = world.root, world.add_repo
    if checkpoint_blocks:
        base = repo("fake-org/sd15-base", base=None, relation=None, tags=["checkpoint"])
        base.files["model.safetensors"] = _file_for(root, base.repo_id, "model.safetensors", seed=1, blocks=checkpoint_blocks,
                                                 width=checkpoint_width)
        tuned = repo("fake-org/sd15-finetune", base="fake-org/sd15-base", relation="finetune", tags=["checkpoint"])
        tuned.files["model.safetensors"] = _file_for(root, tuned.repo_id, "model.safetensors", seed=1,
                                                     blocks=checkpoint_blocks, width=checkpoint_width, tuned=True)  # fmt: skip
    return world


def _file_for(root: Path, repo_id: str, name: str, *, seed: int, blocks: int, width: int, tuned: bool = False) -> FakeFile:
    path = root / repo_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_checkpoint(path, seed=seed, blocks=blocks, width=width)
    if tuned:  # a fine-tune: the base plus a small change in every matrix
        from consentry.formats import read_manifest
        from consentry.fingerprints.arrays import read_array

        manifest = read_manifest(path)
        rng = np.random.default_rng(seed + 1)
        weights = {}
        for t in manifest.tensors:
            a = read_array(manifest, t)
            if a.ndim == 2:
                a = a + rng.standard_normal((a.shape[0], 4)) @ rng.standard_normal((4, a.shape[1])) * 0.002  # ~8% of the weights
            weights[t.name] = a.astype(np.float16)
        save_file(weights, str(path))
    return FakeFile(name, path, path.stat().st_size, _sha256_file(path), lfs=True)


# --- the app ----------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers={"X-Error-Code": code, "X-Error-Message": message})


def _model_json(repo: FakeRepo, *, full: bool, card: bool, blobs: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "modelId": repo.repo_id,
        "author": repo.author, "likes": repo.likes, "downloads": repo.downloads, "trendingScore": 0,
        "private": False, "gated": repo.gated, "tags": repo.tags, "pipeline_tag": repo.pipeline_tag,
        "library_name": repo.library_name, "createdAt": repo.created_at,
    }  # fmt: skip
    if full:
        out.update({"lastModified": repo.created_at, "sha": repo.sha, "disabled": False})
        siblings = []
        for f in repo.files.values():
            s: dict[str, Any] = {"rfilename": f.name}
            if blobs:
                s.update({"size": f.size, "blobId": f.blob_id})
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE}
            siblings.append(s)
        out["siblings"] = siblings
        out["spaces"] = []
        out["usedStorage"] = sum(f.size for f in repo.files.values())
    if card:
        out["cardData"] = repo.card_data
    return out


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def make_app(world: HfWorld) -> Any:
    """The ASGI app serving ``world`` (faults applied by an outer ASGI wrapper)."""

    def repo_or_404(request: Request) -> FakeRepo | Response:
        repo_id = f"{request.path_params['ns']}/{request.path_params['name']}"
        repo = world.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository not found: {repo_id}")
        rev = request.path_params.get("rev")
        if rev is not None and rev not in ("main", repo.sha):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo

    async def list_models(request: Request) -> Response:
        q = request.query_params
        search, author = q.get("search"), q.get("author")
        filters = q.getlist("filter")
        full, card = q.get("full") in ("True", "true", "1"), q.get("cardData") in ("True", "true", "1")
        hits = [r for r in world.ordered()
                if (not search or search.lower() in r.repo_id.lower()) and (not author or r.author == author)
                and all(f in r.tags for f in filters)]  # fmt: skip
        offset = 0
        if "cursor" in q:
            offset = json.loads(base64.urlsafe_b64decode(q["cursor"]))["o"]
        size = min(int(q.get("limit", world.page_size)), world.page_size)
        page = hits[offset : offset + size]
        headers = {}
        if offset + size < len(hits):
            params = [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", _cursor(offset + size))]
            headers["Link"] = f'<{str(request.base_url).rstrip("/")}/api/models?{urlencode(params)}>; rel="next"'
        return JSONResponse([_model_json(r, full=full, card=card) for r in page], headers=headers)

    async def model_info(request: Request) -> Response:
        repo = repo_or_404(request)
        if isinstance(repo, Response):
            return repo
        blobs = request.query_params.get("blobs") in ("True", "true", "1")
        return JSONResponse(_model_json(repo, full=True, card=True, blobs=blobs))

    async def tree(request: Request) -> Response:
        repo = repo_or_404(request)
        if isinstance(repo, Response):
            return repo
        items = []
        for f in repo.files.values():
            item: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.name}
            if f.lfs:
                item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE}
            items.append(item)
        return JSONResponse(items)

    async def resolve(request: Request) -> Response:
        repo = repo_or_404(request)
        if isinstance(repo, Response):
            return repo
        if repo.gated:
            auth = request.headers.get("authorization", "")
            if auth.removeprefix("Bearer ") not in world.granted_tokens:
                return _error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have access to it.")
        f = repo.files.get(request.path_params["file"])
        if f is None:
            return _error(404, "EntryNotFound", f"{request.path_params['file']} does not exist on \"main\"")
        etag = f'"{f.sha256}"' if f.lfs else f'"{f.blob_id}"'
        headers = {"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(f.size), "X-Repo-Commit": repo.sha}
        return range_response(request, f.path, headers=headers)

    routes = [
        Route("/api/models", list_models),
        Route("/api/models/{ns}/{name}", model_info),
        Route("/api/models/{ns}/{name}/revision/{rev}", model_info),
        Route("/api/models/{ns}/{name}/tree/{rev}", tree),
        Route("/{ns}/{name}/resolve/{rev}/{file:path}", resolve, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes)


# --- serving in a background thread -------------------------------------------------------------


def serve_world(world: HfWorld) -> FakeServer:
    """``with serve_world(hf_world(0, tmp)) as hub: HfApi(endpoint=hub.url)``."""
    return FakeServer(make_app(world))


def iter_files(world: HfWorld) -> Iterator[tuple[FakeRepo, FakeFile]]:
    for repo in world.ordered():
        for f in repo.files.values():
            yield repo, f


def main() -> None:  # pragma: no cover - manual use: python -m consentry.hubs.fake_huggingface ROOT
    import sys

    world = hf_world(int(sys.argv[2]) if len(sys.argv) > 2 else 0, Path(sys.argv[1]))
    serve_forever(make_app(world), int(sys.argv[3]) if len(sys.argv) > 3 else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
