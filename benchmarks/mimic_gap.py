"""How closely the bundled model mimics its distillation teacher (OMZ 0277) on training crops vs
unseen test crops: mean cosine between the student's embedding and the teacher's (centred on the
training mean, as in training). A large gap = the student learnt the mapping for the crops it saw.

    python benchmarks/mimic_gap.py   (needs runs/peta_mobilenetv2/teacher_features.npy from training
                                      and the PETA data prepared in /tmp/xd or $XREID_DATA_ROOT)
"""
import os
import numpy as np
from pathlib import Path
from xreid.models.embedders import load_embedder
from xreid.data.protocol import load_protocol
from xreid.data.transforms import resize_rgb
from xreid.data.images import load_image
proto = load_protocol("peta-reid", Path(os.environ.get("XREID_DATA_ROOT", "/tmp/xd")))
recs = proto.test_images()
teacher = load_embedder("../shared/models/openvino/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml")
student = load_embedder("default")
tr = np.load("runs/peta_mobilenetv2/teacher_features.npy"); mean = tr.mean(0)
def cos_to_teacher(records):
    imgs = [load_image(proto.image_root / r.path) for r in records]
    t = np.concatenate([teacher.embed_arrays([resize_rgb(im, teacher.preprocess.size) for im in imgs[i:i+64]]) for i in range(0, len(imgs), 64)])
    s = np.concatenate([student.embed_arrays([resize_rgb(im, student.preprocess.size) for im in imgs[i:i+64]]) for i in range(0, len(imgs), 64)])
    t = t / np.linalg.norm(t, axis=1, keepdims=True); t = t - mean; t /= np.linalg.norm(t, axis=1, keepdims=True)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    return float((s * t).sum(1).mean())
rng = np.random.default_rng(0)
train = [proto.train[i] for i in rng.choice(len(proto.train), 1000, replace=False)]
print("mean cos(student, centred teacher): train crops (no augmentation) %.3f, test crops %.3f" % (cos_to_teacher(train), cos_to_teacher(recs)))
