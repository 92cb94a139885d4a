"""Instrument files as they come off the SEM: pixels, the pixel size the tool wrote, and the data bar.

Pixel size sources, in the order they are tried:

- Zeiss: the ``CZ_SEM`` TIFF tag, "Image Pixel Size" (or "Pixel Size") with its unit;
- Thermo Fisher / FEI: the ``FEI_HELIOS`` or ``FEI_SFEG`` tag, ``[Scan] PixelWidth`` in metres;
- Hitachi: ``PixelSize=`` (nm) in the TIFF comment (``XPComment``, ``ImageDescription``) or in the
  ``.txt`` sidecar of the same stem;
- JEOL: the ``.txt`` sidecar, ``$$SM_MICRON_BAR`` (px) and ``$$SM_MICRON_MARKER`` (a length);
- the TIFF resolution tags, only when their unit is a length (inch or cm) and they give a pixel
  under a micrometre (72 dpi means a screen, not a microscope).

Everything else (the meta.csv column, ``--pixel-size``, a default) is decided by the dataset.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SegSEMError

__all__ = ["SEMFile", "read_sem", "find_data_bar", "INPUT_SUFFIXES"]

#: File types read as images.
INPUT_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

_LENGTH_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "μm": 1e3, "nm": 1.0, "pm": 1e-3, "fm": 1e-6}


@dataclass(frozen=True)
class SEMFile:
    """One image file with what it says about itself.

    Attributes
    ----------
    image : (M, N) uint8 or uint16 ndarray
    pixel_size_nm : float or None
        As written by the instrument; None when the file does not say.
    pixel_size_source : str
        Where it came from (``"Zeiss CZ_SEM Image Pixel Size"``, ``"Hitachi PixelSize"``, ...),
        empty when unknown.
    notes : tuple of str
        What was done to the pixels on reading (palette mapped to grey, first of N pages, ...).
    """

    image: np.ndarray
    pixel_size_nm: float | None = None
    pixel_size_source: str = ""
    notes: tuple = ()


def _length_nm(value: float, unit: str) -> float | None:
    factor = _LENGTH_NM.get(unit.strip())
    return None if factor is None or not value > 0 else float(value) * factor


def _zeiss(tags: dict) -> tuple[float, str] | None:
    cz = tags.get("CZ_SEM")
    if not isinstance(cz, dict):
        return None
    for key, name in (("ap_image_pixel_size", "Image Pixel Size"), ("ap_pixel_size", "Pixel Size")):
        entry = cz.get(key)
        if isinstance(entry, tuple) and len(entry) >= 3:
            nm = _length_nm(float(entry[1]), str(entry[2]))
            if nm:
                return nm, f"Zeiss CZ_SEM {name}"
    return None


def _fei(tags: dict) -> tuple[float, str] | None:
    for tag in ("FEI_HELIOS", "FEI_SFEG"):
        meta = tags.get(tag)
        if isinstance(meta, dict):
            scan = meta.get("Scan") or {}
            width = scan.get("PixelWidth")
            try:
                if width is not None and float(width) > 0:
                    return float(width) * 1e9, f"{tag} [Scan] PixelWidth"
            except (TypeError, ValueError):
                pass
    return None


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if len(raw) > 1 and raw[1:2] == b"\x00":  # Windows XP* tags are UTF-16-LE
            return raw.decode("utf-16-le", errors="ignore")
        return raw.decode("latin-1", errors="ignore")
    return str(value)


def _hitachi(text: str) -> float | None:
    m = re.search(r"^\s*PixelSize\s*=\s*([0-9.eE+-]+)", text, re.MULTILINE)
    try:
        return float(m.group(1)) if m and float(m.group(1)) > 0 else None
    except ValueError:
        return None


def _jeol(text: str) -> float | None:
    bar = re.search(r"\$\$?SM_MICRON_BAR\s+([0-9.]+)", text)
    marker = re.search(r"\$\$?SM_MICRON_MARKER\s+([0-9.]+)\s*([a-zA-Zµμ]+)", text)
    if not bar or not marker or not float(bar.group(1)) > 0:
        return None
    nm = _length_nm(float(marker.group(1)), marker.group(2))
    return nm / float(bar.group(1)) if nm else None


def _resolution(tags: dict) -> tuple[float, str] | None:
    unit = tags.get("ResolutionUnit")
    xres = tags.get("XResolution")
    unit = int(getattr(unit, "value", unit) or 1)
    if unit not in (2, 3) or not xres:
        return None
    num, den = xres if isinstance(xres, tuple) else (xres, 1)
    if not num or not den:
        return None
    per_unit = float(num) / float(den)
    nm = (2.54e7 if unit == 2 else 1e7) / per_unit
    return (nm, "TIFF resolution tags") if nm < 1000 else None


def _sidecar(path: Path) -> tuple[float, str] | None:
    for side in (path.with_suffix(".txt"), path.with_suffix(".TXT")):
        if side.exists():
            text = side.read_text(errors="ignore")
            if (nm := _hitachi(text)) is not None:
                return nm, f"Hitachi PixelSize in {side.name}"
            if (nm := _jeol(text)) is not None:
                return nm, f"JEOL micron bar in {side.name}"
    return None


def _grey_or_colour(arr: np.ndarray, path: Path, notes: list) -> np.ndarray:
    rgb = arr[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        notes.append("grey stored as RGB")
        return rgb[..., 0]
    warnings.warn(f"{path}: colour image converted to grey (luminance)", UserWarning, stacklevel=3)
    notes.append("colour converted to luminance")
    return (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).round().astype(arr.dtype)


def _read_tiff(path: Path, notes: list) -> tuple[np.ndarray, dict]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise SegSEMError(f"{path}: unreadable image (a TIFF without any image in it)")
        page = tif.pages[0]
        if len(tif.pages) > 1:
            notes.append(f"first of {len(tif.pages)} pages")
        arr = page.asarray()
        tags = {}
        for tag in page.tags.values():
            tags[tag.name] = tag.value
        for name in ("fei_metadata", "sem_metadata"):
            try:
                meta = getattr(tif, name, None)
            except Exception:  # a malformed vendor tag is not a reason to refuse the pixels
                meta = None
            if meta:
                tags["FEI_HELIOS" if name == "fei_metadata" else "CZ_SEM"] = meta
        if int(page.photometric) == 3 and "ColorMap" in tags and arr.ndim == 2:
            cmap = np.asarray(tags["ColorMap"])
            if cmap.ndim == 2 and cmap.shape[0] == 3:
                if np.array_equal(cmap[0], cmap[1]) and np.array_equal(cmap[1], cmap[2]):
                    grey = cmap[0]
                    lut = (grey // 257).astype(np.uint8) if np.all(grey % 257 == 0) else grey.astype(np.uint16)
                    arr = lut[np.clip(arr, 0, len(lut) - 1)]
                    notes.append("palette with a grey map")
                else:
                    arr = np.stack([cmap[i][np.clip(arr, 0, cmap.shape[1] - 1)] for i in range(3)], axis=-1)
                    arr = (arr // 257).astype(np.uint8)
    return arr, tags


def read_sem(path: str | Path) -> SEMFile:
    """Read an SEM image file and its pixel size.

    Parameters
    ----------
    path : path
        TIFF (8/16-bit, palette with a grey map, first page of a multi-page file), PNG,
        JPEG or BMP.

    Returns
    -------
    SEMFile
        Grey pixels (RGB whose channels are equal is taken as it is; true colour becomes
        luminance with a ``UserWarning``) and the pixel size, if the file or its ``.txt``
        sidecar gives one.

    Raises
    ------
    SegSEMError
        If the file is missing, unreadable, or not an 8- or 16-bit grey image.
    """
    path = Path(path)
    notes: list[str] = []
    tags: dict = {}
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr, tags = _read_tiff(path, notes)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im, dtype=np.uint16)
                elif im.mode == "I":
                    arr = np.asarray(im)
                    arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
                else:
                    if im.mode in ("P", "1", "LA", "PA", "CMYK", "YCbCr"):
                        im = im.convert("RGBA" if "A" in im.mode else "RGB")
                    arr = np.asarray(im)
                for key in ("comment", "Comment", "Description"):
                    if key in im.info:
                        tags["ImageDescription"] = im.info[key]
    except SegSEMError:
        raise
    except FileNotFoundError:
        raise SegSEMError(f"{path}: no such file") from None
    except Exception as exc:  # PIL and tifffile raise many types for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SegSEMError(f"{path}: unreadable image ({reason})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = _grey_or_colour(arr, path, notes)
    if arr.ndim != 2:
        raise SegSEMError(f"{path}: expected a 2-D grey image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16):
        raise SegSEMError(f"{path}: expected an 8- or 16-bit unsigned image, got {arr.dtype}")
    if arr.size == 0:
        raise SegSEMError(f"{path}: empty image of shape {arr.shape}")
    found = _zeiss(tags) or _fei(tags)
    if found is None:
        for key in ("XPComment", "ImageDescription", "XPKeywords"):
            if key in tags and (nm := _hitachi(_text(tags[key]))) is not None:
                found = (nm, f"Hitachi PixelSize in {key}")
                break
    found = found or _sidecar(path) or _resolution(tags)
    if found is None:
        return SEMFile(arr, None, "", tuple(notes))
    return SEMFile(arr, float(found[0]), found[1], tuple(notes))


def find_data_bar(image: np.ndarray, *, max_fraction: float = 0.35, min_rows: int = 3,
                  uniform: float = 0.5) -> tuple[int, int]:
    """The rows of an image that hold the field, without a burned-in data bar.

    A data bar is a band across the full width at the bottom (or top) of the image, made
    of a flat colour with text on it: in most of its rows one grey value covers at least
    ``uniform`` of the pixels, which never happens in a noisy SEM field.

    Parameters
    ----------
    image : (M, N) ndarray
    max_fraction : float
        A band deeper than this fraction of the height is not taken for a data bar.
    min_rows : int
        Fewer uniform rows than this are not a bar (a dead scan line).
    uniform : float
        Share of a row taken by its most common value for the row to count as bar.

    Returns
    -------
    (int, int)
        First and last-plus-one row of the field: ``image[y0:y1]`` is the field. The bottom
        bar's first row is ``y1`` (``y1 == M`` when there is none).
    """
    img = np.asarray(image)
    rows = img.shape[0]
    if img.dtype == np.uint8:
        counts = np.bincount((img.astype(np.int64) + 256 * np.arange(rows)[:, None]).ravel(), minlength=256 * rows)
        most = counts.reshape(rows, 256).max(axis=1)
    else:
        most = np.array([np.unique(row, return_counts=True)[1].max() for row in img])
    flat = most >= uniform * img.shape[1]
    limit = int(max_fraction * rows)

    def band(order: np.ndarray) -> int:
        """How many rows from this end belong to a bar (0 if none)."""
        seen = 0
        depth = 0
        for i, r in enumerate(order[:limit]):
            seen += flat[r]
            if flat[r] and seen >= 0.6 * (i + 1):
                depth = i + 1
        return depth if flat[order[:depth]].sum() >= min_rows else 0

    bottom = band(np.arange(rows - 1, -1, -1))
    top = band(np.arange(rows))
    return top, rows - bottom
