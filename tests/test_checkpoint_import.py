"""Cross-checks of `reid_nb.fastreid.load_fastreid_checkpoint` / `load_torchreid_checkpoint` and of
`reid_nb.config` against the reference implementations (FastReID 1.4.0, torchreid 0.2.5).

For each architecture we build the *reference* model with random weights, randomise every
normalisation layer's statistics and affine parameters (so that a wrong mapping cannot hide behind
identity BNs or zero-initialised non-local blocks), save its state dict the way the reference saves
checkpoints, load it with reid_nb, and compare the eval embeddings of the same random images.

Skipped when fastreid / torchreid cannot be imported. reid_nb itself never imports them.
Heavy (ResNet-50s on CPU, about a minute).
"""
import importlib, warnings
from pathlib import Path
import pytest, torch, yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT/'configs'
torch.set_num_threads(2)

def _reference(package:str, *modules:str):   # called at import: conftest.py imports this module under the FastReID shim
    "`package` once it and its `modules` import, else None."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            for m in modules: importlib.import_module(m)
            return importlib.import_module(package)
    except Exception: return None

fastreid = _reference('fastreid', 'fastreid.modeling', 'fastreid.config')
torchreid = _reference('torchreid')
needs_fastreid = pytest.mark.skipif(fastreid is None, reason='fastreid cannot be imported')
needs_torchreid = pytest.mark.skipif(torchreid is None, reason='torchreid cannot be imported')

@torch.no_grad()
def randomise_norms(model:nn.Module, x:torch.Tensor, seed:int=0):
    """Make every normalisation layer non-trivial: random affine parameters (BN, IN), running statistics
    measured on `x` (each BN in training mode with momentum 1 during one eval forward, so deep random
    networks stay finite), learnable GeM exponents set to 3.5. The BN closing a non-local block (`W.1`)
    gets a small scale, as in a trained model (FastReID starts it at 0): its output is cubic in the
    input and would overflow otherwise. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            m.weight.copy_((torch.rand(m.weight.shape, generator=g) + 0.5) * (0.1 if name.endswith('W.1') else 1.))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if isinstance(getattr(m, 'p', None), nn.Parameter): m.p.fill_(3.5)
    model.eval()
    for m in bns: m.momentum = 1.0; m.train()
    model(x)
    for m in bns: m.momentum = 0.1
    return model.eval()

def rel_err(a, b): return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()

# ---------------------------------------------------------------------------------------------
# Config: our defaults and every file of configs/ give exactly the tree FastReID builds
# ---------------------------------------------------------------------------------------------

@needs_fastreid
def test_default_config_matches_fastreid():
    from reid_nb.config import get_default_config
    from fastreid.config import get_cfg
    ours = get_default_config()
    assert ours.pop('SEED') == 0   # reid_nb's additions: SEED, SOLVER.CHECKPOINT_MINUTES, the video keys; its one other default: MODEL.DEVICE auto
    assert ours['SOLVER'].pop('CHECKPOINT_MINUTES') == 5.0
    assert (ours['INPUT'].pop('SEQ_LEN'), ours['INPUT'].pop('SAMPLE_METHOD'), ours['MODEL'].pop('TEMPORAL')) == (0, 'restricted', '')
    assert ours['MODEL']['DEVICE'] == 'auto'
    assert yaml.safe_load(get_cfg().dump()) == {**ours, 'MODEL': {**ours['MODEL'], 'DEVICE': 'cuda'}}

VIDEO_KEYS = {'INPUT': {'SEQ_LEN': 0, 'SAMPLE_METHOD': 'restricted'}, 'MODEL': {'TEMPORAL': ''}}   # reid_nb's video keys, unknown to FastReID

@needs_fastreid
@pytest.mark.parametrize('path', sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.glob('**/*.yml') if 'MARS' not in p.parts))
def test_configs_match_fastreid(path, tmp_path):
    from reid_nb.config import load_config
    from fastreid.config import get_cfg
    cfg = get_cfg(); cfg.merge_from_file(str(CONFIGS/path))
    ref = {**yaml.safe_load(cfg.dump()), 'SEED': 0}
    ref['SOLVER']['CHECKPOINT_MINUTES'] = 5.0   # reid_nb's additions, at their defaults
    for sec, kv in VIDEO_KEYS.items(): ref[sec].update(kv)
    # the dumped config.yaml that FastReID writes into its output folder loads too (it says MODEL.DEVICE cuda)
    (tmp_path/'config.yaml').write_text(cfg.dump())
    assert load_config(tmp_path/'config.yaml') == ref
    ref['MODEL']['DEVICE'] = 'auto'             # reid_nb's default: CUDA when there is one
    assert load_config(CONFIGS/path) == ref

# ---------------------------------------------------------------------------------------------
# FastReID checkpoints
# ---------------------------------------------------------------------------------------------

FASTREID_CASES = {  # name: (config file, extra opts)
    'BoT-R50': ('Market1501/bagtricks_R50.yml', []),
    'AGW-R50': ('Market1501/AGW_R50.yml', []),
    'AGW-R50-ibn': ('Market1501/AGW_R50-ibn.yml', []),
    'SBS-R50-ibn': ('Market1501/sbs_R50-ibn.yml', []),
    'MGN-R50': ('Market1501/mgn_R50.yml', []),
    'MGN-R50-ibn': ('Market1501/mgn_R50-ibn.yml', []),
    'BoT-S50': ('Market1501/bagtricks_S50.yml', []),
}
SIZES = {'MGN-R50-ibn': [(256, 128), (384, 128)]}  # FastReID's MGN sizes: stripes of 6/6/4 and 8/8/8 rows; others at a small size

def _fastreid_model(cfg_file, opts, num_classes=7):
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model
    cfg = get_cfg(); cfg.merge_from_file(str(CONFIGS/cfg_file))
    torch.manual_seed(0)   # the same random weights every run
    cfg.merge_from_list(['MODEL.BACKBONE.PRETRAIN', False, 'MODEL.DEVICE', 'cpu',
                         'MODEL.HEADS.NUM_CLASSES', num_classes] + opts)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = build_model(cfg)
    return cfg, randomise_norms(model, torch.rand(4, 3, 96, 32) * 255)

@needs_fastreid
@pytest.mark.parametrize('name', list(FASTREID_CASES))
def test_fastreid_checkpoint(name, tmp_path):
    from reid_nb.fastreid import load_fastreid_checkpoint
    cfg_file, opts = FASTREID_CASES[name]
    cfg, ref = _fastreid_model(cfg_file, opts)
    ckpt = tmp_path/'model_final.pth'
    torch.save({'model': ref.state_dict(), 'iteration': 0}, ckpt)   # what FastReID's Checkpointer saves
    (tmp_path/'config.yaml').write_text(cfg.dump())                 # what FastReID dumps next to it
    # the dumped config.yaml is checked once here (test_configs_match_fastreid checks them all as configs)
    for config in [CONFIGS/cfg_file] + ([tmp_path/'config.yaml'] if name == 'SBS-R50-ibn' else []):
        model = load_fastreid_checkpoint(ckpt, config)
        assert not model.training
        for size in SIZES.get(name, [(96, 32)]):
            torch.manual_seed(0)
            x = torch.rand(2, 3, *size)                                   # RGB in [0, 1]: reid_nb's input
            with torch.no_grad(): want, got = ref(x.clone() * 255), model(x)  # FastReID's input: RGB in [0, 255]
            assert got.shape == want.shape, (got.shape, want.shape)
            assert rel_err(got, want) < 5e-4, (name, config, size, rel_err(got, want))   # float32 noise through a random deep net reaches ~2e-4; a wrong mapping gives O(1)

# ---------------------------------------------------------------------------------------------
# torchreid checkpoints
# ---------------------------------------------------------------------------------------------

TORCHREID_ARCHS = ['osnet_x1_0', 'osnet_x0_25', 'osnet_ibn_x1_0', 'resnet50']

@needs_torchreid
@pytest.mark.parametrize('arch', TORCHREID_ARCHS)
def test_torchreid_checkpoint(arch, tmp_path):
    from reid_nb.fastreid import load_torchreid_checkpoint
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ref = torchreid.models.build_model(arch, num_classes=7, pretrained=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = randomise_norms(ref, (torch.rand(4, 3, 64, 32) - mean) / std)
    ckpt = tmp_path/'model.pth.tar-1'
    torch.save({'state_dict': ref.state_dict(), 'epoch': 1}, ckpt)   # torchreid's save_checkpoint layout
    x = torch.rand(2, 3, 64, 32)
    # torchreid normalises outside the model (ImageNet mean/std on [0, 1] RGB); reid_nb inside
    with torch.no_grad(): want = ref((x - mean) / std)
    model = load_torchreid_checkpoint(ckpt, arch)
    got = model(x)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert rel_err(got, want) < 1e-4, (arch, rel_err(got, want))
