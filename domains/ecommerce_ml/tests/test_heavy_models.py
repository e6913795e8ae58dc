"""The heavy environment's models, run there for real: the ONNX image-encoder path with a tiny
ONNX model built by the test, the hand-made image features, the frozen TF-IDF, VADER."""

from __future__ import annotations

from domains.ecommerce_ml.tests.heavy_support import run_heavy


def test_onnx_encoder_runs_the_model_it_is_given():
    out = run_heavy("""
        import json
        import numpy as np
        from PIL import Image
        from domains.ecommerce_ml.heavy.models import OnnxImageEncoder
        from domains.ecommerce_ml.heavy.testmodels import build_tiny_encoder, DIMS
        data = build_tiny_encoder()
        enc = OnnxImageEncoder(data, "tiny.onnx")
        rng = np.random.default_rng(1)
        imgs = [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
        vecs = enc.encode(imgs)
        # the same graph by hand: resize, normalise, 4x4 mean pool, matmul, relu, L2
        import onnx
        from onnx import numpy_helper
        w = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}["w"]
        x = np.asarray(imgs[0].convert("RGB").resize((32, 32)), np.float32).transpose(2, 0, 1) / 255.0
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]) / np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
        pooled = x.reshape(3, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(-1)
        ref = np.maximum(pooled @ w, 0)
        ref = ref / np.linalg.norm(ref)
        print(json.dumps({"name": enc.name, "version": enc.version, "dims": enc.dims, "shape": list(vecs.shape),
                          "max_diff_to_hand": float(np.abs(vecs[0] - ref).max()),
                          "norms": [float(n) for n in np.linalg.norm(vecs, axis=1)],
                          "distinct": float(np.abs(vecs[0] - vecs[1]).max()),
                          "again": float(np.abs(enc.encode(imgs[:1])[0] - vecs[0]).max()),
                          "expected_dims": DIMS}))
    """)
    assert out["name"] == "onnx:tiny.onnx" and len(out["version"]) == 16
    assert out["dims"] == out["expected_dims"] == 16 and out["shape"] == [3, 16]
    assert out["max_diff_to_hand"] < 1e-4
    assert all(abs(n - 1) < 1e-5 for n in out["norms"])
    assert out["distinct"] > 1e-3 and out["again"] == 0.0


def test_handcrafted_image_features_say_so_and_separate_colours():
    out = run_heavy("""
        import json
        import numpy as np
        from PIL import Image
        from domains.ecommerce_ml.heavy.models import ColourTextureFeatures
        f = ColourTextureFeatures()
        red, red2, blue = (Image.new("RGB", (50, 60), c) for c in ((200, 20, 20), (190, 30, 25), (20, 20, 200)))
        v = f.encode([red, red2, blue])
        print(json.dumps({"name": f.name, "shape": list(v.shape), "red_red": float(v[0] @ v[1]), "red_blue": float(v[0] @ v[2])}))
    """)
    assert out["name"].startswith("handcrafted/") and "histogram" in out["name"]
    assert out["shape"] == [3, 94]
    assert out["red_red"] > 0.95 > out["red_blue"] + 0.3


def test_tfidf_state_round_trips_and_vader_behaves():
    """(MiniLM runs for real in both DAG tests, whose similarity checks cover it.)"""
    out = run_heavy("""
        import json
        import numpy as np
        from domains.ecommerce_ml.heavy.models import TfidfModel, VaderScorer
        from domains.ecommerce_ml.heavy.pgio import sparsevec_literal
        texts = ["red cotton dress with short sleeves", "blue denim trousers", "red silk dress", "wool socks"]
        m = TfidfModel.fit(texts)
        m2 = TfidfModel.from_state(json.loads(json.dumps(m.state)))
        a, b = m.transform(texts).toarray(), m2.transform(texts).toarray()
        vader = VaderScorer()
        print(json.dumps({"same": float(np.abs(a - b).max()), "version_equal": m.version == m2.version, "dims": m.dims,
                          "literal": sparsevec_literal(m.transform(["wool socks"])[0], m.dims),
                          "pos": vader.score("I love it, perfect fit and great quality!"),
                          "neg": vader.score("Terrible, it broke after one wash. Very disappointed.")}))
    """)
    assert out["same"] == 0.0 and out["version_equal"]
    assert out["literal"].startswith("{") and out["literal"].endswith(f"}}/{out['dims']}")
    assert out["pos"]["label"] == "positive" and out["neg"]["label"] == "negative"
