"""The dataset format: reading, writing, targets and validation.

::

    DATASET/
      images/<stem>.png | .tif | .tiff   grayscale SEM image, 8- or 16-bit (RGB converted, with a warning)
      masks/<stem>.png | .tif            instance labels (0 background, k feature k) or binary 0/255
      meta.csv          (optional)       stem, exposure_case, pixel_size_nm, split, target_label,
                                         prompt_x, prompt_y, design_area_px, design_aspect, ...
      layout/<stem>.json (optional)      {"features": {"<label>": [[[x, y], ...], ...]}} in pixels
      layout/<stem>.gds | .oas (optional) the design clip in nm, centred on the image (or meta.csv's
                                         layout_x_nm, layout_y_nm); a whole chip via ``layout=``

Points are (x = column, y = row) with pixel centres at integers.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon

from .coords import pixel_of_point, point_in_image, polygon_area, rc_to_xy
from .errors import SegSEMError
from .instrument import INPUT_SUFFIXES, SEMFile, find_data_bar, read_sem

__all__ = [
    "IMAGE_SUFFIXES",
    "Design",
    "Target",
    "Dataset",
    "DatasetReport",
    "check_dataset",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
    "atomic_write",
    "interior_point",
    "mask_bbox_xyxy",
    "design_from_polygons",
    "sample_dataset",
    "real_samples",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
_NUMERIC = ("exposure_case", "pixel_size_nm", "target_label", "prompt_x", "prompt_y", "design_area_px", "design_aspect",
            "layout_x_nm", "layout_y_nm", "rotation_deg")


# ----------------------------------------------------------------------------- files

def read_image(path: str | Path) -> np.ndarray:
    """Read a grey SEM image (the pixels of :func:`segsem_lite.instrument.read_sem`).

    Parameters
    ----------
    path : path
        TIFF, PNG, JPEG or BMP.

    Returns
    -------
    (M, N) uint8 or uint16 ndarray
        True colour is converted to luminance with a ``UserWarning``.

    Raises
    ------
    SegSEMError
        If the file is missing, unreadable or truncated, or not an 8- or 16-bit image.
    """
    return read_sem(path).image


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as an instance label image.

    Parameters
    ----------
    path : path
        Instance label image (0 background, k feature k; uint8 or uint16), or a binary
        0/255 image whose connected components become the instances.

    Returns
    -------
    (M, N) int32 ndarray
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
    except FileNotFoundError:
        raise SegSEMError(f"{path}: no such file") from None
    except Exception as exc:  # PIL and tifffile raise many types for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SegSEMError(f"{path}: unreadable mask ({reason})") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise SegSEMError(f"{path}: expected a 2-D integer label image, got {arr.dtype} of shape {arr.shape}")
    values = np.unique(arr)
    if arr.dtype == np.bool_ or (arr.dtype == np.uint8 and set(values.tolist()) <= {0, 255} and 255 in values):
        labels, _ = ndi.label(arr > 0)
        return labels.astype(np.int32)
    if values.min() < 0:
        raise SegSEMError(f"{path}: negative labels; expected 0 for background and k > 0 for feature k")
    return arr.astype(np.int32)


def atomic_write(path: str | Path, write) -> Path:
    """Write a file through a temporary file in the same folder, then rename it into place.

    Parameters
    ----------
    path : path
    write : callable
        Called with the temporary path; writes the content there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an 8- or 16-bit grayscale (or 8-bit RGB) image as PNG or TIFF, atomically."""
    arr = np.asarray(image)
    path = Path(path)

    def _write(tmp: Path) -> None:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, arr)
        else:
            from PIL import Image

            # fast zlib level: a batch writes two PNGs per target (optimize=True took ten times as long on overlays)
            Image.fromarray(arr).save(tmp, format="PNG", compress_level=3)

    return atomic_write(path, _write)


def write_mask(path: str | Path, labels: np.ndarray) -> Path:
    """Write an instance label image: uint8 when labels fit, else uint16."""
    lab = np.asarray(labels)
    if lab.max(initial=0) > 65535:
        raise SegSEMError(f"{path}: {int(lab.max())} labels do not fit a 16-bit mask")
    return write_image(path, lab.astype(np.uint8 if lab.max(initial=0) < 256 else np.uint16))


def write_layout(path: str | Path, features: dict) -> Path:
    """Write per-image design polygons in pixels, ``{"features": {"<label>": [[[x, y], ...], ...]}}``
    (what :meth:`Dataset.load_layout` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"features": {str(k): v for k, v in features.items()}}))
    return path


# ----------------------------------------------------------------------------- targets

#: A feature cut by the image border is a target when it is at least this wide (px) where it is widest ...
MIN_BORDER_WIDTH_PX = 8.0
#: ... and shows at least this many pixels.
MIN_BORDER_AREA_PX = 64


def _deepest(mask: np.ndarray) -> tuple[float, float, float]:
    """The most interior pixel of a mask as a point (x, y), and its distance to the mask's edge (px)."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    x, y = rc_to_xy(np.array([r, c]))
    return float(x), float(y), float(dist[r, c])


def _polygons_region(polygons: list, shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The pixels whose centres lie inside any of the polygons ((x, y) px), on the polygons' box clipped to the
    image: (region, x0, y0), the region's pixel (0, 0) being image pixel (x0, y0)."""
    rows, cols = shape
    pts = np.vstack(polygons)
    x0, y0 = np.clip(np.floor(pts.min(axis=0)).astype(int), 0, [cols - 1, rows - 1])
    x1, y1 = np.clip(np.ceil(pts.max(axis=0)).astype(int), 0, [cols - 1, rows - 1])
    region = np.zeros((y1 - y0 + 1, x1 - x0 + 1), bool)
    for p in polygons:
        rr, cc = draw_polygon(p[:, 1] - y0, p[:, 0] - x0, region.shape)
        region[rr, cc] = True
    return region, int(x0), int(y0)


def _visible_enough(region: np.ndarray, depth: float) -> bool:
    """Whether a feature cut by the border, ``depth`` px deep at its most interior point, can be segmented."""
    return region.sum() >= MIN_BORDER_AREA_PX and depth >= MIN_BORDER_WIDTH_PX / 2


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The most interior pixel of a mask (distance-transform maximum), as a point (x, y)."""
    return _deepest(mask)[:2]


def mask_bbox_xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of a non-empty mask's pixels, as :meth:`Design.bbox_xyxy` gives a design's."""
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max(), rows.max()


@dataclass(frozen=True)
class Design:
    """What the design says about a target, for the gate's geometric check.

    Attributes
    ----------
    area_px : float or None
        Design area in pixels.
    aspect : float or None
        Long side over short side of the design's bounding box.
    polygons : tuple of (K, 2) ndarray
        Design polygons (x, y) in pixels, when a layout gives them.
    """

    area_px: float | None = None
    aspect: float | None = None
    polygons: tuple = ()

    @property
    def known(self) -> bool:
        return self.area_px is not None or self.aspect is not None

    def bbox_xyxy(self) -> tuple[float, float, float, float] | None:
        """Bounding box (x0, y0, x1, y1) of the design polygons, in pixels."""
        if not self.polygons:
            return None
        pts = np.vstack(self.polygons)
        return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def design_from_polygons(polygons: list) -> Design:
    """Area (shoelace) and bounding-box aspect of design polygons given as (x, y) points."""
    polys = tuple(np.asarray(p, dtype=float).reshape(-1, 2) for p in polygons)
    if not polys or any(len(p) < 3 for p in polys):
        raise SegSEMError(f"design polygons {polygons!r:.60}: expected polygons of at least 3 (x, y) points")
    area = sum(polygon_area(p) for p in polys)
    pts = np.vstack(polys)
    w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
    aspect = max(w, h) / min(w, h) if min(w, h) > 0 else None
    return Design(area_px=float(area), aspect=aspect, polygons=polys)


@dataclass(frozen=True)
class Target:
    """One feature to segment in one image.

    Attributes
    ----------
    stem : str
        Image stem.
    label : int or None
        Ground-truth instance label (``None`` for inference-only data).
    prompt_xy : (float, float)
        Prompt point (x = column, y = row) in pixels.
    design : Design
    exposure_case : str or None
    pixel_size_nm : float or None
    split : str or None
    touches_border : bool
        The feature runs past the image border (a grating line, a hole cut by the edge):
        it is segmented as far as the image shows it.
    tone : str or None
        What the user says the feature is (meta.csv ``tone``): ``bright`` or ``dark``
        against its surroundings; None lets the pipeline decide from the image.
    feature : str or None
        What the user says the feature is made of (meta.csv ``feature``): ``resist`` (lines,
        pillars) or ``opening`` (trenches, holes); a ``clip_tone`` column as ``segsem synth``
        writes it says the same (``line``: resist, ``hole``: openings). None: not known.
    size_px : float or None
        The feature's width in px when discovery measured it (the fallback's scale).
    box_xyxy : (int, int, int, int) or None
        Where discovery saw the feature (x0, y0, x1, y1, px): the fallback looks at
        least that far, so a line across the field is segmented whole.
    """

    stem: str
    label: int | None
    prompt_xy: tuple[float, float]
    design: Design = field(default_factory=Design)
    exposure_case: str | None = None
    pixel_size_nm: float | None = None
    split: str | None = None
    touches_border: bool = False
    tone: str | None = None
    feature: str | None = None
    size_px: float | None = None
    box_xyxy: tuple | None = None

    @property
    def key(self) -> str:
        """``stem:label``, unique within a dataset."""
        return f"{self.stem}:{self.label if self.label is not None else 'p'}"


def _fmt_case(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class Dataset:
    """Images to segment: a dataset folder, a plain folder of instrument files, or one file.

    Parameters
    ----------
    root : path
        A dataset folder holding ``images/`` (and optionally ``masks/``, ``meta.csv``,
        ``prompts.csv``, ``layout/``); or a folder of image files as they come off the
        tool (with an optional ``meta.csv`` and ``prompts.csv`` beside them); or one
        image file.
    pixel_size_nm : float, optional
        Used where meta.csv gives none, before the file's own metadata (``--pixel-size``).
    crop : (x0, y0, x1, y1), optional
        The field of every image in pixels (``--crop``), instead of the detected data bar.

    Raises
    ------
    SegSEMError
        If the path is missing or holds no image files, or ``meta.csv`` cannot be parsed.
    """

    def __init__(self, root: str | Path, *, pixel_size_nm: float | None = None,
                 crop: tuple[int, int, int, int] | None = None, layout: str | Path | None = None,
                 layer: str | None = None, search_nm: float = 150.0, reference: str | Path | None = None):
        root = Path(root)
        self.source = root
        self._options = dict(layout=str(layout) if layout else None, layer=layer, search_nm=float(search_nm),
                             reference=str(reference) if reference else None)
        if not search_nm > 0:
            raise SegSEMError(f"alignment search {search_nm!r}: expected a positive number of nm")
        self.layer = layer
        self.search_nm = float(search_nm)
        # the chip's layout (--layout): one layer of a GDS/OASIS file; read now, so a bad file stops at once
        self.layout = None
        if layout:
            from .layout import read_layout

            self.layout = read_layout(layout, layer)
        self.reference = Path(reference) if reference else None
        if self.reference is not None and not self.reference.is_file():
            raise SegSEMError(f"{self.reference}: no such reference image")
        if pixel_size_nm is not None and not pixel_size_nm > 0:
            raise SegSEMError(f"pixel size {pixel_size_nm!r}: expected a positive number of nm per pixel")
        if crop is not None and (len(crop) != 4 or not (crop[0] < crop[2] and crop[1] < crop[3])):
            raise SegSEMError(f"crop {crop!r}: expected x0,y0,x1,y1 with x0 < x1 and y0 < y1")
        self.pixel_size_override = pixel_size_nm
        self.crop = tuple(int(v) for v in crop) if crop is not None else None
        self.images: dict[str, Path] = {}
        self.duplicates: list[tuple[Path, Path]] = []
        if root.is_file():
            if root.suffix.lower() not in INPUT_SUFFIXES:
                raise SegSEMError(f"{root}: not an image file; expected one of {', '.join(INPUT_SUFFIXES)}")
            self.root, self.kind, files = root.parent, "file", [root]
        elif not root.exists():
            raise SegSEMError(f"{root}: no such dataset folder or image file")
        elif (root / "images").is_dir():
            self.root, self.kind, files = root, "dataset", sorted((root / "images").iterdir())
        else:
            self.root, self.kind, files = root, "folder", sorted(root.iterdir())
            if not any(p.suffix.lower() in INPUT_SUFFIXES for p in files):
                raise SegSEMError(f"{root}: no image files ({', '.join(INPUT_SUFFIXES)}) and no images/ folder")
        for p in files:
            if p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith("."):
                if p.stem in self.images:
                    self.duplicates.append((self.images[p.stem], p))
                else:
                    self.images[p.stem] = p
        self.masks: dict[str, Path] = {}
        masks_dir = self.root / "masks"
        if self.kind == "dataset" and masks_dir.is_dir():
            for p in sorted(masks_dir.iterdir()):
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                    self.masks.setdefault(p.stem, p)
        self.meta = self._read_meta()
        self.prompts = self._read_prompts()

    def spec(self) -> tuple:
        """What opens this dataset again in another process: (path, options as sorted (name, value) pairs)."""
        options = dict(self._options, pixel_size_nm=self.pixel_size_override, crop=self.crop)
        return str(self.source.resolve()), tuple(sorted(options.items()))

    # -- metadata
    def _read_meta(self):
        import pandas as pd

        path = self.root / "meta.csv"
        if not path.exists():
            return None
        try:
            meta = pd.read_csv(path, dtype={"stem": str})
        except Exception as exc:
            raise SegSEMError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]})") from None
        if "stem" not in meta.columns:
            raise SegSEMError(f"{path}: expected a 'stem' column, found {list(meta.columns)}")
        for col in _NUMERIC:
            if col in meta.columns and col != "exposure_case":
                converted = pd.to_numeric(meta[col], errors="coerce")
                bad = meta[col].notna() & converted.isna()
                if bad.any():
                    row = meta[bad].iloc[0]
                    raise SegSEMError(f"{path}: stem {row['stem']}: {col}={row[col]!r} is not a number")
                meta[col] = converted
        return meta

    def _read_prompts(self) -> dict[str, list[tuple[float, float, Any]]]:
        import pandas as pd

        path = self.root / "prompts.csv"
        if not path.exists():
            return {}
        try:
            table = pd.read_csv(path, dtype={"stem": str, "label": str})
        except Exception as exc:
            raise SegSEMError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]})") from None
        missing = [c for c in ("stem", "x", "y") if c not in table.columns]
        if missing:
            raise SegSEMError(f"{path}: expected columns stem, x, y (and optionally label), missing {missing}")
        out: dict[str, list] = {}
        for i, row in table.iterrows():
            try:
                x, y = float(row["x"]), float(row["y"])
            except (TypeError, ValueError):
                x = y = float("nan")
            if not (np.isfinite(x) and np.isfinite(y)):
                raise SegSEMError(f"{path}: row {i + 2} ({row['stem']}): x={row['x']!r}, y={row['y']!r}; "
                                  f"expected numbers in px")
            label = row.get("label")
            label = None if label is None or (isinstance(label, float) and np.isnan(label)) else str(label)
            out.setdefault(str(row["stem"]), []).append((x, y, label))
        return out

    @property
    def stems(self) -> list[str]:
        """Image stems, sorted."""
        return list(self.images)

    @property
    def has_masks(self) -> bool:
        """Whether the dataset has ground truth (a ``masks/`` folder with files)."""
        return bool(self.masks)

    def __len__(self) -> int:
        return len(self.images)

    def row(self, stem: str) -> dict[str, Any]:
        """The meta.csv row of an image as a dict (empty when absent)."""
        if self.meta is None:
            return {}
        rows = self.meta[self.meta["stem"] == stem]
        if rows.empty:
            return {}
        return {k: v for k, v in rows.iloc[0].to_dict().items() if not (isinstance(v, float) and np.isnan(v))}

    def split(self, name: str) -> list[str]:
        """Stems in a split (``train``, ``val`` or ``test``); all stems if no split is given."""
        if name not in ("train", "val", "test"):
            raise SegSEMError(f"split {name!r}: expected train, val or test")
        if self.meta is None or "split" not in self.meta.columns:
            return self.stems
        chosen = set(self.meta.loc[self.meta["split"] == name, "stem"])
        return [s for s in self.stems if s in chosen]

    # -- files
    def load_image(self, stem: str) -> np.ndarray:
        """The image of ``stem``; see :func:`read_image`."""
        return self.load_sem(stem).image

    def load_sem(self, stem: str) -> SEMFile:
        """The image of ``stem`` with the pixel size its file gives; see :func:`read_sem`."""
        if stem not in self.images:
            raise SegSEMError(f"{self.root}: no image with stem {stem!r}")
        return read_sem(self.images[stem])

    def pixel_size(self, stem: str, sem: SEMFile | None = None) -> tuple[float | None, str]:
        """The pixel size of ``stem`` in nm and where it comes from.

        meta.csv's ``pixel_size_nm`` first, then the dataset's ``pixel_size_nm`` (the CLI's
        ``--pixel-size``), then the file's metadata; ``(None, "")`` when none says.
        """
        row = self.row(stem)
        if "pixel_size_nm" in row:
            return float(row["pixel_size_nm"]), "meta.csv"
        if self.pixel_size_override is not None:
            return float(self.pixel_size_override), "--pixel-size"
        sem = sem if sem is not None else self.load_sem(stem)
        return sem.pixel_size_nm, sem.pixel_size_source

    def field(self, stem: str, image: np.ndarray) -> tuple[int, int, int, int]:
        """The part of the image that shows the sample, (x0, y0, x1, y1) in px.

        The dataset's ``crop`` when given (clipped to the image), otherwise the image
        without its data bar (:func:`find_data_bar`).
        """
        rows, cols = image.shape[:2]
        if self.crop is not None:
            x0, y0, x1, y1 = self.crop
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(cols, x1), min(rows, y1)
            if x1 - x0 < 1 or y1 - y0 < 1:
                raise SegSEMError(f"crop {self.crop}: outside the image {self.images.get(stem, stem)} of "
                                  f"{cols}x{rows} px")
            return x0, y0, x1, y1
        y0, y1 = find_data_bar(image)
        return 0, y0, cols, y1

    def load_mask(self, stem: str) -> np.ndarray | None:
        """The instance labels of ``stem``, or None for inference-only data."""
        if stem not in self.masks:
            if self.has_masks:
                raise SegSEMError(f"{self.root / 'masks'}: no mask for image {self.images.get(stem, stem)}")
            return None
        return read_mask(self.masks[stem])

    def load_layout(self, stem: str) -> dict[str, list] | None:
        """The design polygons of ``stem`` by label, or None."""
        path = self.root / "layout" / f"{stem}.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            features = data["features"]
            if not isinstance(features, dict):
                raise TypeError("'features' is not an object")
        except Exception as exc:
            raise SegSEMError(f"{path}: expected {{\"features\": {{\"<label>\": [[[x, y], ...], ...]}}}} ({exc})") from None
        return {str(k): v for k, v in features.items()}

    # -- layout
    def clip_file(self, stem: str) -> Path | None:
        """The per-image layout clip ``layout/<stem>.gds`` (or ``.oas``), centred on the image, if any."""
        from .layout import LAYOUT_SUFFIXES

        for suffix in LAYOUT_SUFFIXES:
            path = self.root / "layout" / f"{stem}{suffix}"
            if path.is_file():
                return path
        return None

    def place(self, stem: str, image: np.ndarray, pixel_size_nm: float | None,
              field: tuple[int, int, int, int] | None = None):
        """Place an image on its design and align it (None when no layout file covers it).

        The chip layout (``layout=``) needs the image's site in meta.csv (``layout_x_nm``,
        ``layout_y_nm``, optional ``rotation_deg``); a per-image clip file is centred on
        the image unless meta.csv says otherwise. See :mod:`segsem_lite.layout` for the
        conventions.

        Returns
        -------
        segsem_lite.layout.Placement or None

        Raises
        ------
        SegSEMError
            For an unreadable clip file, a missing site or pixel size, or a site outside
            the layout.
        """
        from .layout import Placement, Site, align_to_design, read_layout

        row = self.row(stem)
        where = f"{self.root / 'meta.csv'}: stem {stem}"
        if self.layout is not None:
            layout = self.layout
            if "layout_x_nm" not in row or "layout_y_nm" not in row:
                raise SegSEMError(f"{where}: no layout_x_nm, layout_y_nm (the image's site on {layout.path.name})")
        else:
            clip = self.clip_file(stem)
            if clip is None:
                return None
            layout = read_layout(clip, self.layer)
        if not pixel_size_nm:
            raise SegSEMError(f"{self.images.get(stem, stem)}: pixel size unknown; placing it on {layout.path.name} "
                              f"needs one (meta.csv pixel_size_nm, --pixel-size or the file's metadata)")
        try:
            center = (float(row.get("layout_x_nm", 0.0)), float(row.get("layout_y_nm", 0.0)))
            rotation = float(row.get("rotation_deg", 0.0))
        except (TypeError, ValueError):
            raise SegSEMError(f"{where}: layout_x_nm, layout_y_nm, rotation_deg must be numbers") from None
        nominal = Site(center, float(pixel_size_nm), tuple(image.shape[:2]), rotation)
        layout.check_site(nominal, where)
        ids = layout.in_window(nominal.window_nm(self.search_nm + 2 * pixel_size_nm))
        name = f"{layout.path.name} layer {layout.layer[0]}/{layout.layer[1]}"
        if not ids:
            raise SegSEMError(f"{where}: no polygon of {name} within {self.search_nm:g} nm of the field at site "
                              f"({center[0]:g}, {center[1]:g}) nm")
        polygons = {i + 1: layout.polygons[i] for i in ids}
        alignment = align_to_design(image, list(polygons.values()), nominal, search_nm=self.search_nm, field=field)
        site = nominal.shifted(alignment.dx_nm, alignment.dy_nm) if alignment.ok else nominal
        return Placement(nominal=nominal, site=site, alignment=alignment, polygons=polygons, source=name)

    def _design_targets(self, placement, shape: tuple[int, int], common: dict, border: bool) -> list:
        """One target per design polygon that shows in the image, prompted inside the aligned polygon."""
        import gdstk

        rows, cols = shape
        frame = gdstk.rectangle((-0.5, -0.5), (cols - 0.5, rows - 0.5))
        out = []
        for pid, poly in placement.polygons_px().items():
            inside = [np.asarray(p.points) for p in gdstk.boolean(gdstk.Polygon(poly), frame, "and")]
            if not inside:
                continue
            whole = abs(polygon_area(poly))
            touches = sum(abs(polygon_area(p)) for p in inside) < whole - 1e-6
            region, x0, y0 = _polygons_region(inside, shape)
            x1, y1 = x0 + region.shape[1] - 1, y0 + region.shape[0] - 1
            if not region.any():
                continue
            x, y, depth = _deepest(region)
            if touches and (not border or not _visible_enough(region, depth)):
                continue
            design = design_from_polygons(inside)
            out.append(Target(label=pid, prompt_xy=(x + x0, y + y0), design=design, touches_border=touches,
                              box_xyxy=(x0, y0, x1, y1), **common))
        return out

    # -- targets
    def targets(self, stem: str, *, mask: np.ndarray | None = None, shape: tuple[int, int] | None = None,
                border: bool = True, image: np.ndarray | None = None,
                pixel_size_nm: float | None = None, placement: Any = None) -> list[Target]:
        """The targets of one image.

        Where meta.csv names ``target_label`` (and ``prompt_x``, ``prompt_y``), that feature
        is the target and the point its prompt. Otherwise every instance is a target,
        prompted at its most interior point; one cut by the image border (flagged
        ``touches_border``) only when at least :data:`MIN_BORDER_WIDTH_PX` px of it is
        visible across and :data:`MIN_BORDER_AREA_PX` px in all. A meta.csv ``tone``
        column (``bright``, ``dark`` or ``auto``) says what the image shows of the features, a
        ``feature`` column (``resist``, ``opening`` or ``auto``; or ``clip_tone``, ``line`` or
        ``hole``) what they are made of.
        Without masks, targets come from ``prompts.csv`` (any number of rows per image),
        the meta prompt or the layout's features; with none of these and the image given,
        every feature of its field is discovered (:func:`segsem_lite.discover.discover_features`).

        Parameters
        ----------
        stem : str
        mask : (M, N) ndarray, optional
            The instance labels, if already loaded.
        shape : (rows, cols), optional
            Image shape, for checking prompts; read from the mask when omitted.
        border : bool
            Include features cut by the image border (fine-tuning leaves them out: a
            window around their point shows only part of them).
        image : (M, N) ndarray, optional
            The image, for discovery.
        pixel_size_nm : float, optional
            The file's own pixel size, used when neither meta.csv nor the dataset's
            ``pixel_size_nm`` gives one.
        placement : segsem_lite.layout.Placement, optional
            The image placed on its layout (:meth:`place`): then every design polygon that
            shows in the image is a target, labelled by its polygon id, prompted inside
            the aligned polygon, with the polygon's area and aspect for the gate.

        Raises
        ------
        SegSEMError
            For a target label missing from the mask, or a prompt outside the image or target.
        """
        if mask is None:
            mask = self.load_mask(stem)
        if shape is None and mask is not None:
            shape = mask.shape
        if shape is None and image is not None:
            shape = image.shape
        row = self.row(stem)
        layout = self.load_layout(stem)
        tone = row.get("tone")
        if tone is not None and tone not in ("bright", "dark", "auto"):
            raise SegSEMError(f"{self.root / 'meta.csv'}: stem {stem}: tone={tone!r}; expected bright (features "
                              f"brighter than their surroundings), dark, or auto")
        feature = row.get("feature")
        if feature is None:
            feature = {"line": "resist", "hole": "opening"}.get(row.get("clip_tone"))
        if feature is not None and feature not in ("resist", "opening", "auto"):
            raise SegSEMError(f"{self.root / 'meta.csv'}: stem {stem}: feature={feature!r}; expected resist (lines, "
                              f"pillars), opening (trenches, holes), or auto")
        common = dict(
            stem=stem,
            tone=None if tone == "auto" else tone,
            feature=None if feature == "auto" else feature,
            exposure_case=_fmt_case(row.get("exposure_case")),
            pixel_size_nm=(float(row["pixel_size_nm"]) if "pixel_size_nm" in row
                           else self.pixel_size_override if self.pixel_size_override is not None else pixel_size_nm),
            split=row.get("split"),
        )

        def design_for(label: Any) -> Design:
            if "design_area_px" in row or "design_aspect" in row:
                d_layout = Design()
                if layout and str(label) in layout:
                    d_layout = design_from_polygons(layout[str(label)])
                return Design(area_px=row.get("design_area_px"), aspect=row.get("design_aspect"),
                              polygons=d_layout.polygons)
            if layout and label is not None and str(label) in layout:
                try:
                    return design_from_polygons(layout[str(label)])
                except SegSEMError as exc:
                    raise SegSEMError(f"{self.root / 'layout' / (stem + '.json')}: feature {label}: {exc}") from None
            return Design()

        if placement is not None:
            if shape is None:
                raise SegSEMError(f"{self.images.get(stem, stem)}: image shape needed to place design targets")
            return self._design_targets(placement, shape, common, border)
        where = f"{self.root / 'meta.csv'}: stem {stem}"
        prompt = None
        if "prompt_x" in row or "prompt_y" in row:
            if "prompt_x" not in row or "prompt_y" not in row:
                raise SegSEMError(f"{where}: prompt needs both prompt_x and prompt_y")
            prompt = (float(row["prompt_x"]), float(row["prompt_y"]))
            if shape is not None and not point_in_image(prompt, shape):
                raise SegSEMError(f"{where}: prompt (x={prompt[0]:g}, y={prompt[1]:g}) is outside the image of "
                                  f"{shape[1]}x{shape[0]} px")
        if stem in self.prompts:
            out = []
            for i, (x, y, name) in enumerate(self.prompts[stem]):
                where_p = f"{self.root / 'prompts.csv'}: {stem} (x={x:g}, y={y:g})"
                if shape is not None and not point_in_image((x, y), shape):
                    raise SegSEMError(f"{where_p}: outside the image of {shape[1]}x{shape[0]} px")
                label = int(mask[pixel_of_point((x, y))]) if mask is not None else (name or i + 1)
                if mask is not None and label == 0:
                    raise SegSEMError(f"{where_p}: on background, not on a feature of the mask")
                out.append(Target(label=label, prompt_xy=(x, y), design=design_for(label), **common))
            keys = [str(t.label) for t in out]
            if len(set(keys)) < len(keys):
                raise SegSEMError(f"{self.root / 'prompts.csv'}: {stem}: two prompts on one target "
                                  f"(labels {sorted(k for k in set(keys) if keys.count(k) > 1)[:5]})")
            return out
        if "target_label" in row:
            label = int(row["target_label"])
            if mask is not None:
                if not (mask == label).any():
                    present = sorted(int(v) for v in np.unique(mask) if v)
                    raise SegSEMError(f"{where}: target_label {label} is not in the mask (labels {present[:10]})")
                if prompt is None:
                    prompt = interior_point(mask == label)
                elif mask[pixel_of_point(prompt)] != label:
                    raise SegSEMError(f"{where}: prompt (x={prompt[0]:g}, y={prompt[1]:g}) is outside target {label}")
            if prompt is None:
                raise SegSEMError(f"{where}: target_label {label} without masks needs prompt_x and prompt_y")
            return [Target(label=label, prompt_xy=prompt, design=design_for(label), **common)]
        if prompt is not None:
            label = int(mask[pixel_of_point(prompt)]) if mask is not None else None
            if mask is not None and label == 0:
                raise SegSEMError(f"{where}: prompt (x={prompt[0]:g}, y={prompt[1]:g}) is on background, not on a feature")
            return [Target(label=label, prompt_xy=prompt, design=design_for(label), **common)]
        if mask is not None:
            out = []
            objects = ndi.find_objects(mask)
            for idx, sl in enumerate(objects):
                if sl is None:
                    continue
                label = idx + 1
                sub = mask[sl] == label
                touches = sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == mask.shape[0] or sl[1].stop == mask.shape[1]
                x, y, depth = _deepest(sub)
                if touches and (not border or not _visible_enough(sub, depth)):
                    continue
                prompt = (x + sl[1].start, y + sl[0].start)
                out.append(Target(label=label, prompt_xy=prompt, design=design_for(label), touches_border=touches,
                                  **common))
            return out
        if layout:
            out = []
            for key, polys in layout.items():
                design = design_for(key)
                if shape is None:
                    raise SegSEMError(f"{where}: image shape needed to place layout prompts")
                region, ox, oy = _polygons_region(design.polygons, shape)
                if not region.any():
                    continue
                touches = bool((oy == 0 and region[0].any()) or (ox == 0 and region[:, 0].any())
                               or (oy + region.shape[0] == shape[0] and region[-1].any())
                               or (ox + region.shape[1] == shape[1] and region[:, -1].any()))
                x, y, depth = _deepest(region)
                if touches and (not border or not _visible_enough(region, depth)):
                    continue
                label = int(key) if key.isdigit() else None
                out.append(Target(label=label, prompt_xy=(x + ox, y + oy), design=design, touches_border=touches,
                                  **common))
            return out
        if image is not None:
            return self._discover(stem, image, common, border)
        return []

    def _discover(self, stem: str, image: np.ndarray, common: dict, border: bool) -> list[Target]:
        from .discover import discover_features

        x0, y0, x1, y1 = self.field(stem, image)
        found = discover_features(image[y0:y1, x0:x1], tone=common["tone"])
        out = []
        for f in found.features:
            if f.touches_border and (not border or f.width_px < MIN_BORDER_WIDTH_PX or f.area_px < MIN_BORDER_AREA_PX):
                continue
            bx0, by0, bx1, by1 = f.box_xyxy
            w, h = bx1 - bx0 + 1, by1 - by0 + 1
            # what discovery saw stands in for a design in the gate's geometric check (a model candidate
            # far from it in area or aspect falls back)
            seen = Design(area_px=float(f.area_px), aspect=max(w, h) / min(w, h))
            out.append(Target(label=len(out) + 1, prompt_xy=(f.prompt_xy[0] + x0, f.prompt_xy[1] + y0),
                              design=seen, touches_border=f.touches_border, size_px=f.width_px,
                              box_xyxy=(bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), **common))
        return out

    def all_targets(self, stems: list[str] | None = None) -> list[Target]:
        """Targets of many images (errors raise; see :func:`check_dataset` to list them all)."""
        out = []
        for stem in stems if stems is not None else self.stems:
            out.extend(self.targets(stem))
        return out


# ----------------------------------------------------------------------------- validation

@dataclass
class DatasetReport:
    """What :func:`check_dataset` found.

    Attributes
    ----------
    problems : list of str
        One line per problem, naming the file and what is wrong.
    warnings : list of str
        Things that work but deserve a look (RGB images, images without targets).
    summary : dict
        Counts of images, targets, exposure cases, pixel sizes, bit depths and splits.
    """

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_summary(self) -> str:
        """The summary as aligned text lines."""
        s = self.summary
        lines = [
            f"dataset        {s.get('root')}",
            f"images         {s.get('images', 0)}",
            f"targets        {s.get('targets', 0)}",
            f"ground truth   {'yes' if s.get('has_masks') else 'no (inference only)'}",
            f"exposure cases {_fmt_counts(s.get('exposure_cases', {}))}",
            f"pixel size nm  {s.get('pixel_size_nm', '-')}",
            f"bit depths     {_fmt_counts(s.get('bit_depths', {}))}",
            f"image sizes    {_fmt_counts(s.get('image_sizes', {}))}",
            f"splits         {_fmt_counts(s.get('splits', {}))}",
        ]
        return "\n".join(lines)


def _fmt_counts(counts: dict) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def check_dataset(root: str | Path) -> DatasetReport:
    """Validate a dataset and summarise it.

    Reads every image, mask, layout and meta row, and lists each problem on one line:
    unreadable or truncated images, mask shapes that differ from their image, prompts
    outside the image or the target, target labels missing from the mask, duplicate
    stems, images without mask where masks exist, masks without image, an empty
    dataset, and meta.csv rows for missing images.

    Parameters
    ----------
    root : path

    Returns
    -------
    DatasetReport
    """
    report = DatasetReport()
    try:
        ds = Dataset(root)
    except SegSEMError as exc:
        report.problems.append(str(exc))
        return report
    for first, second in ds.duplicates:
        report.problems.append(f"{second}: duplicate stem {second.stem!r} (also {first.name})")
    if not ds.images:
        report.problems.append(f"{ds.root / 'images'}: empty dataset, no .png/.tif/.tiff images")
    if ds.meta is not None:
        meta_path = ds.root / "meta.csv"
        dup = ds.meta["stem"][ds.meta["stem"].duplicated()]
        for stem in dup.unique():
            report.problems.append(f"{meta_path}: duplicate rows for stem {stem!r}")
        for stem in ds.meta["stem"]:
            if stem not in ds.images:
                report.problems.append(f"{meta_path}: row for stem {stem!r} but no image images/{stem}.png|.tif|.tiff")
        if "split" in ds.meta.columns:
            for stem, value in zip(ds.meta["stem"], ds.meta["split"]):
                if isinstance(value, str) and value not in SPLITS:
                    report.problems.append(f"{meta_path}: stem {stem}: split {value!r}; expected train, val or test")
        if "pixel_size_nm" in ds.meta.columns:
            for stem, value in zip(ds.meta["stem"], ds.meta["pixel_size_nm"]):
                if not np.isnan(value) and value <= 0:
                    report.problems.append(f"{meta_path}: stem {stem}: pixel_size_nm {value:g}; expected > 0")
    for stem in ds.masks:
        if stem not in ds.images:
            report.problems.append(f"{ds.masks[stem]}: mask without an image of stem {stem!r}")
    bit_depths: Counter = Counter()
    sizes: Counter = Counter()
    cases: Counter = Counter()
    splits: Counter = Counter()
    pixel_sizes: list[float] = []
    n_targets = 0
    for stem, path in ds.images.items():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sem = read_sem(path)
            report.warnings.extend(str(w.message) for w in caught)
        except SegSEMError as exc:
            report.problems.append(str(exc))
            continue
        image = sem.image
        bit_depths[f"{image.dtype.itemsize * 8}-bit"] += 1
        sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
        row = ds.row(stem)
        cases[_fmt_case(row.get("exposure_case")) or "-"] += 1
        splits[row.get("split", "-")] += 1
        size, _ = ds.pixel_size(stem, sem)
        if size is not None:
            pixel_sizes.append(float(size))
        mask = None
        if ds.has_masks:
            if stem not in ds.masks:
                report.problems.append(f"{path}: no mask masks/{stem}.png|.tif, but the dataset has masks")
                continue
            try:
                mask = read_mask(ds.masks[stem])
            except SegSEMError as exc:
                report.problems.append(str(exc))
                continue
            if mask.shape != image.shape:
                report.problems.append(
                    f"{ds.masks[stem]}: mask shape {mask.shape[1]}x{mask.shape[0]} differs from its image "
                    f"{image.shape[1]}x{image.shape[0]}")
                continue
        try:
            targets = ds.targets(stem, mask=mask, shape=image.shape, image=image if mask is None else None)
        except SegSEMError as exc:
            report.problems.append(str(exc))
            continue
        if not targets:
            report.warnings.append(f"{path}: no targets (nothing named and nothing discovered in the field)")
        n_targets += len(targets)
    report.summary = {
        "root": str(ds.root),
        "images": len(ds.images),
        "targets": n_targets,
        "has_masks": ds.has_masks,
        "exposure_cases": dict(sorted(cases.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        "pixel_size_nm": (f"{min(pixel_sizes):g} to {max(pixel_sizes):g}" if pixel_sizes else "-"),
        "bit_depths": dict(bit_depths),
        "image_sizes": dict(sizes),
        "splits": dict(splits),
    }
    return report


def sample_dataset() -> Path:
    """The path of the shipped sample dataset (60 synthetic CD-SEM images, 10 exposure cases).

    In a source checkout this is the repository's ``data_samples/``. Where the package
    is installed without it, the same images are regenerated once (same command, same
    seed) into ``~/.cache/segsem_lite/data_samples``.
    """
    repo = Path(__file__).resolve().parent.parent / "data_samples"
    if (repo / "meta.csv").exists():
        return repo
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "segsem_lite" / "data_samples"
    if not (cache / "meta.csv").exists():
        from .synth import write_dataset

        write_dataset(cache, **SAMPLE_RECIPE)
    return cache


def real_samples() -> Path:
    """The folder of shipped real SEM images (``data_samples/real``, see its SOURCES.md).

    Raises
    ------
    SegSEMError
        Where the package is installed without its source checkout.
    """
    path = Path(__file__).resolve().parent.parent / "data_samples" / "real"
    if not path.is_dir():
        raise SegSEMError(f"{path}: the real sample images ship with the source checkout of segsem_lite")
    return path


#: The exact recipe of ``data_samples/`` (also ``make data-samples``).
SAMPLE_RECIPE = {"n_per_case": 6, "seed": 2025, "size": 512, "test_per_case": 1}
