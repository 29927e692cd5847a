"""Golden vectors: the hex of every algorithm for each bundled image, stored here.

Generated once with this implementation; the live comparison tests (imagehash, pdqhash)
run on the same images, and this file checks the stored values against them too, so the
stored values are known to be right. A change that moves our hashes *and* the references
together (a new Pillow resampling or JPEG decoder, a new imagehash) still fails here,
instead of silently changing every hash users have stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

import hashlib_ext as hx

BUNDLED = Path(__file__).resolve().parent.parent / "datasets" / "coco-mini"
ALGORITHMS = ("ahash", "dhash", "phash", "whash", "pdq")
IMAGEHASH = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash,
             "phash": imagehash.phash, "whash": imagehash.whash}
PDQ_TOL_BITS = 2  # pdqhash's float rounding may flip a bit pair (as in tests/test_pdq.py)
PDQ_TOL_QUALITY = 1

GOLDEN: dict[str, dict[str, Any]] = {
    "000000000009.jpg": {"sha256": "35cdfe8259aca40d",
        "ahash": "0c2ee6fcf262f1b0", "dhash": "68cc8c19a4c62766",
        "phash": "e4930f064a7b717c", "whash": "0c2ee6fcf262f190",
        "pdq": "96e0ea9770ae2ac887c3ab4f6220e9c6748ea99fce47416fe3a9cd305b78c864",
        "pdq_quality": 100},
    "000000000025.jpg": {"sha256": "d8f12a26d8803701",
        "ahash": "0f5f1c04060607ff", "dhash": "ffb7b07dbc1e3eb1",
        "phash": "b4888935962f7d1b", "whash": "0f5f1f8406020fff",
        "pdq": "c2d9bc02416dfc6ba163d369e96fc24d28690dec5a5ea97a74b40ed6ad4a2d28",
        "pdq_quality": 100},
    "000000000030.jpg": {"sha256": "0444b10826d376ad",
        "ahash": "f0f0901898c0ffff", "dhash": "804465713313b668",
        "phash": "d846e679098268ff", "whash": "f0f0901888c0ffff",
        "pdq": "b38ebe2a34cbc104dd31198e88a0c86167d465ffec8bf6203248cccfdc33fbb1",
        "pdq_quality": 100},
    "000000000034.jpg": {"sha256": "2c46871034fa901a",
        "ahash": "efef0703c7c70707", "dhash": "1488ac6c2ea70cfd",
        "phash": "b6c1dbf91d068c16", "whash": "cfee07038747a607",
        "pdq": "7da291b139d008939ce9f3b4ccd16662b263b33419184cb8e3dc99cf4cedb347",
        "pdq_quality": 100},
    "000000000036.jpg": {"sha256": "7b04d9d0a1ea8b93",
        "ahash": "c7c703228fe7e302", "dhash": "0c2fcf4a5c1f0ffe",
        "phash": "b7de04fa15672912", "whash": "c7c70382cfe7e302",
        "pdq": "9f55c89954a73222cd1b426c8665d9dceb3155a4aacab67332d459af49ba223d",
        "pdq_quality": 100},
    "000000000042.jpg": {"sha256": "9da8dbb3f415b054",
        "ahash": "ff9f0606070f0f0f", "dhash": "3e3e1e2c7df6dc93",
        "phash": "b5e6a982aa7299aa", "whash": "ff8f0606070f0f0f",
        "pdq": "b76c6dd0525b546f8b3866d991278e4d4d91b32a94cc6b27abaab5a0554a4b33",
        "pdq_quality": 100},
    "000000000049.jpg": {"sha256": "0a29047d4bd83d26",
        "ahash": "fffffe1c20001000", "dhash": "f0f0e07168a4f2f8",
        "phash": "d6d3a9270bd85287", "whash": "fffffe9c30101800",
        "pdq": "b0d3093f6ddcd6ce9bb3a9b1a66c67ce58d2da70e785248db868db720a4204a5",
        "pdq_quality": 100},
    "000000000061.jpg": {"sha256": "03919a304272b466",
        "ahash": "e2620303e0fcf8f4", "dhash": "ccc6d647cd19528c",
        "phash": "e725d0da6699b0c6", "whash": "e3430323e0fcf8f4",
        "pdq": "e335df4f84dc370b194ccc0ff64031b689debe314786a0c93c33822da227bfd2",
        "pdq_quality": 100},
    "000000000064.jpg": {"sha256": "efb62bc395400df8",
        "ahash": "f9c0e0e0c0e387c7", "dhash": "93858d4b13050e1e",
        "phash": "e3c888afc9a7c03d", "whash": "f9f0e0e0e0e187c7",
        "pdq": "aa13afbcaf15c79668d879599c182f191578e11e5d81cc72f8c941facf08ee09",
        "pdq_quality": 100},
    "000000000071.jpg": {"sha256": "c9e8680a3bdd1021",
        "ahash": "ffffff0c01000000", "dhash": "b0c53ab8abb3989a",
        "phash": "98c7f32a15552da6", "whash": "ffffff3e05010000",
        "pdq": "471c28ccb927d7b382d9294cbc26f69183e8ad32335a54d5f2542daa12e77cf1",
        "pdq_quality": 100},
    "000000000072.jpg": {"sha256": "34985f0e3d9e7165",
        "ahash": "30b8c0fc414b1f1f", "dhash": "667229a98f9bd913",
        "phash": "9947dd2166d66436", "whash": "b0b8c04c654f3f1f",
        "pdq": "758b5a8ae2668241dd3f732cb7891382fa7c01b6e7138f345d337c42a3d92671",
        "pdq_quality": 100},
    "000000000073.jpg": {"sha256": "a202bf8a3327508e",
        "ahash": "fe3c488085a96f1f", "dhash": "b0f0d92d4d5b973f",
        "phash": "9bd88ca5bee0c9a1", "whash": "ff3c480085496f9f",
        "pdq": "1ed27e18e403471e4b32e7920079f701f612f4c2076bdf03173e76daf398e28d",
        "pdq_quality": 100},
    "000000000074.jpg": {"sha256": "de6e1fbb6b8569bb",
        "ahash": "1c1c1c3e3f7f4f0f", "dhash": "f0f0f8f0f8d098d8",
        "phash": "905e78869ed8c733", "whash": "1c18083e3f7f4f0e",
        "pdq": "10d2073ab7f78801631cefd8068cbcf45fe36066cff16d0d283c3ba0a28ff23d",
        "pdq_quality": 100},
    "000000000077.jpg": {"sha256": "c45ca68cf1c5af1e",
        "ahash": "fffe000000011fff", "dhash": "0ec8eabb7925775f",
        "phash": "a6c5f7e4f10d440d", "whash": "ffff000001031fff",
        "pdq": "b6c89f764c3811d66b190837c5ab862d9aa599d8f61128d86d47f13b0b771771",
        "pdq_quality": 100},
    "000000000078.jpg": {"sha256": "fbf237b294405624",
        "ahash": "f970f8f979392400", "dhash": "d3e5c1c3c3c9c959",
        "phash": "cacc3f83e99348b2", "whash": "7978f9f979392400",
        "pdq": "4a9562d4969670c6a7922cf669172f7669564526d4c9db660d4b95686efe4899",
        "pdq_quality": 100},
    "000000000081.jpg": {"sha256": "1a57ac5980eff9d3",
        "ahash": "fff9f08401472fff", "dhash": "8b53250d1d9ecef2",
        "phash": "a34e8d315b36f60c", "whash": "fdf1e080010b27ff",
        "pdq": "68e46b58ca2b50e6d75c873bb2b3a4c4369a55986d972b36912de6468b5859b9",
        "pdq_quality": 100},
    "000000000139.jpg": {"sha256": "ffe0f0cec3b2e27a",
        "ahash": "fefefe3c1282021f", "dhash": "786468706e26367b",
        "phash": "95d3f8748359f805", "whash": "fefefe3c0280001f",
        "pdq": "93cc2e787a72517a250b4a1781f1ce18b8b7b7704f2fbdcd71e01297250f48e5",
        "pdq_quality": 100},
    "000000000285.jpg": {"sha256": "f3a2974ce3686332",
        "ahash": "5c7c7a7f1f830100", "dhash": "b0f0f2ac6333271e",
        "phash": "adc0793ab234790f", "whash": "1e7e7a7f3f830100",
        "pdq": "4f0e2de9e4c98746c3675aa1ac846e16b63290f8dacf52362b2609aed5cffa81",
        "pdq_quality": 100},
    "000000000632.jpg": {"sha256": "a4cd7f45ac1ce27e",
        "ahash": "f999989a03000606", "dhash": "3133333272e4ecec",
        "phash": "9dc9a26627d66233", "whash": "f9f9f89e03120e07",
        "pdq": "736bb7b468529907f6946e7a84364a0b05ed95e64983e2b46d72bcb35aa65249",
        "pdq_quality": 100},
    "000000000724.jpg": {"sha256": "5c0e559c75d3969c",
        "ahash": "07072067060707ff", "dhash": "dc6dc4cf6cfd6d64",
        "phash": "a633bc3ac763451c", "whash": "0707607f061707ff",
        "pdq": "122c285de85ae159d30c7d7efcb34834463f7d9c35c18ae30271db0ee516cda6",
        "pdq_quality": 100},
    "000000000776.jpg": {"sha256": "1dd31e9059c49199",
        "ahash": "7cfce8e1e0a00103", "dhash": "f091098b054d1ba7",
        "phash": "ead48d56840b56bd", "whash": "fcfcf8e1e5a08103",
        "pdq": "b8e1f780ad063a2c2817a8e74087d7b0a0fdffdea6f56768d110b1b57ad88095",
        "pdq_quality": 100},
    "000000000785.jpg": {"sha256": "83981537a7baeafb",
        "ahash": "fff7f3e3f3f3f1e0", "dhash": "3c65264696269303",
        "phash": "ec969a899369b64c", "whash": "1f03f2e3f1f0f0c0",
        "pdq": "999972366c92cce69998936b4b32ed6766cc2d9991b6524b366454d8596c9db4",
        "pdq_quality": 100},
    "000000000802.jpg": {"sha256": "d5b79e7fa716f85c",
        "ahash": "00001d8fafa7a581", "dhash": "5151755d4d4d4971",
        "phash": "bf044cf39c9684ec", "whash": "00009fafafefa781",
        "pdq": "fff8eefe660338631d98df9ef836662be663328911105114451c1e67e419bf80",
        "pdq_quality": 100},
    "000000000872.jpg": {"sha256": "c2aa138ee3a59b05",
        "ahash": "0000181018ffffff", "dhash": "c081f1f5a16a889c",
        "phash": "cc48f3e70c0c979b", "whash": "0000181839ffffff",
        "pdq": "db304986cccedc4c313c3199c3db86f26ce87b4c9be4db98e99826631c67c989",
        "pdq_quality": 100},
    "000000000885.jpg": {"sha256": "1c67b783f78b18dd",
        "ahash": "0000000000ffffff", "dhash": "ebe9e8f8b4cce8b8",
        "phash": "924baea639a7a68c", "whash": "002800007effffff",
        "pdq": "ee71cd9399e23366c4d8cd9a99634661c64899109933a672a4ceb9b2cf3acce9",
        "pdq_quality": 100},
    "000000001000.jpg": {"sha256": "24bb77a31928404e",
        "ahash": "fcf0e0e4c3cbe0f8", "dhash": "e0e00d0dab9b0361",
        "phash": "e352ce8996f2b906", "whash": "fcf0e0e063c9e0f8",
        "pdq": "7ab3bbc2d5d04a59aca04a9315b617efc15072343a6e05a7d23c3f48cbf9c8a5",
        "pdq_quality": 100},
    "000000001268.jpg": {"sha256": "8e85a2e71ee512fe",
        "ahash": "f8d8f8f8f8000000", "dhash": "3039f0b393f0c1f1",
        "phash": "c9d93634ccdf1720", "whash": "fcf8f8fcf8186008",
        "pdq": "0cbfd903f9e088fc8cc0bb81bfe017701d80af802ef48f7df9896d928db6324d",
        "pdq_quality": 100},
    "000000001296.jpg": {"sha256": "34a98da7c11bc881",
        "ahash": "00401e8eddff7860", "dhash": "c997b43c95aca2c4",
        "phash": "f03d43ea1b979681", "whash": "04c01e8edfff7860",
        "pdq": "049ea20726d57d7c97286e8ccc9db974764ca480aa34a27479e80f23dbe1b7de",
        "pdq_quality": 100},
    "000000001353.jpg": {"sha256": "1cccef217a1e5eec",
        "ahash": "0000006bcfc7ffc7", "dhash": "7fdb7ad79b2c2636",
        "phash": "bc0326fae1c47e19", "whash": "000000ebcfd7ffd7",
        "pdq": "61709747a4d9d9366367268cc1799933b6c1da4cdb3f2491ccc34d3fb33283e0",
        "pdq_quality": 100},
    "000000001425.jpg": {"sha256": "71a37c25cdf944cf",
        "ahash": "f8f0f85f47477f00", "dhash": "8880889dc585fcf8",
        "phash": "d2f35fa403927cc1", "whash": "f8f0f84747077f00",
        "pdq": "4be6a704b60e5873c8f127cc3e46d9b2cb99264900dfdb6cffe02092007db767",
        "pdq_quality": 100},
    "000000001490.jpg": {"sha256": "a044804a0b0186a1",
        "ahash": "ffff000000000000", "dhash": "f863f7fbfbdb6beb",
        "phash": "8bb496eb4935342e", "whash": "ffff00000019bf3f",
        "pdq": "9b4dcf86240edf246699797f80757dbb6b64920ab4944b066f49694b96b49496",
        "pdq_quality": 100},
    "000000001503.jpg": {"sha256": "06c721f0a62bcb9f",
        "ahash": "d8ec9c8488dffe60", "dhash": "2829392c30be6880",
        "phash": "defae295608620dd", "whash": "d8cc9c8488dffe60",
        "pdq": "27ec8d50dc26731bed5624e99a94e9d95c169edd1182a9b01e9316dec063e07f",
        "pdq_quality": 100},
}


def _names() -> list[str]:
    return sorted(GOLDEN)


def test_golden_covers_every_bundled_image():
    assert sorted(p.name for p in BUNDLED.glob("*.jpg")) == _names()


@pytest.mark.parametrize("name", _names())
def test_our_hashes_equal_the_stored_vectors(name):
    path = BUNDLED / name
    want = GOLDEN[name]
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == want["sha256"], \
        "the bundled image itself changed"
    got = hx.hash_image(path, list(ALGORITHMS))
    assert {a: got[a].hex for a in ALGORITHMS} == {a: want[a] for a in ALGORITHMS}
    assert got["pdq"].quality == want["pdq_quality"]
    # one algorithm at a time (its own decode) gives the same
    assert hx.hash_image(path, "phash").hex == want["phash"]


@pytest.mark.parametrize("name", _names())
def test_stored_vectors_equal_imagehash_live(name):
    with Image.open(BUNDLED / name) as im:
        im = ImageOps.exif_transpose(im)
        for algo, fn in IMAGEHASH.items():
            assert str(fn(im)) == GOLDEN[name][algo], algo


def test_stored_pdq_vectors_agree_with_pdqhash_live():
    """Within the conformance tolerance (when stored, all 32 were bit-identical)."""
    pdqhash = pytest.importorskip("pdqhash")
    identical = 0
    for name in _names():
        with Image.open(BUNDLED / name) as im:
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
        ref = np.packbits(np.asarray(bits, dtype=np.uint8))
        stored = np.frombuffer(bytes.fromhex(GOLDEN[name]["pdq"]), dtype=np.uint8)
        d = int(np.unpackbits(ref ^ stored).sum())
        assert d <= PDQ_TOL_BITS, (name, d)
        assert abs(int(quality) - GOLDEN[name]["pdq_quality"]) <= PDQ_TOL_QUALITY, name
        identical += d == 0
    assert identical >= 0.9 * len(GOLDEN)
