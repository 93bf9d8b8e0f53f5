from setuptools import find_packages, setup

setup(
    name="kd_det",
    version="0.1.0",
    description="Knowledge distillation for Detectron2 object detectors (Chen et al. 2017) "
    "and companion distillation methods",
    packages=find_packages(include=["kd_det", "kd_det.*"]),
    python_requires=">=3.9",
    # Detectron2 is deliberately not listed: users bring their own build
    # (source, cluster wheel); scripts/setup_env.sh installs one only when missing.
    install_requires=[
        "torch",
        "torchvision",
        "fvcore",
        "iopath",
        "pycocotools",
        "opencv-python",
        "scipy",
        "matplotlib",
        "tqdm",
    ],
    # deploy: tools/export_student.py --format onnx and ONNX Runtime in tools/bench_deploy.py.
    # vit: Detectron2's ViT (ViTDet teachers) imports timm.
    extras_require={"dev": ["pytest", "pytest-timeout", "ruff"],
                    "deploy": ["onnx", "onnxruntime"],
                    "vit": ["timm"]},
)
