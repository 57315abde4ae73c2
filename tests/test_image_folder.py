"""Training on the user's own images: an ImageFolder tree through recipes/train.py's machinery.

A tiny tree of coloured shapes (3 classes, images of several sizes, drawn here with PIL) is read into the model's
32x32 input, trains for one short epoch, exports with its class names, loads back through timm and predicts with
`cifar-timm predict`. `pretrained=true` starts from zoo weights ($CIFAR_TIMM_WEIGHTS, a file this test writes) with a
new classifier and a lower body LR. Trees that would train badly stop with an error naming the problem and the fix.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.cli import main as cli_main
from cifar_timm.data import ImageFolderError, load_image_folder, scan_image_folder
from cifar_timm.hub import HUB_DIR_ENV, TAGS_FILE_ENV, WEIGHTS_ENV
from cifar_timm.training import ConfigError, load_config, train
from cifar_timm.training.components import build_optimizer, build_scheduler

REPO = Path(__file__).resolve().parents[1]
RESNET20 = REPO / 'recipes' / 'configs' / 'resnet20.yaml'
CLASSES = ('circle', 'square', 'triangle')
COLOURS = {'circle': (220, 40, 40), 'square': (40, 180, 60), 'triangle': (40, 80, 220)}
SIZES = ((32, 32), (48, 40), (24, 30), (64, 64))  # most not 32x32: the reader resizes


def draw_shape(kind: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    image = Image.new('RGB', size, tuple(rng.randrange(0, 60) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.uniform(0.05, 0.25) * w, rng.uniform(0.05, 0.25) * h
    x1, y1 = rng.uniform(0.75, 0.95) * w, rng.uniform(0.75, 0.95) * h
    colour = COLOURS[kind]
    if kind == 'circle':
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif kind == 'square':
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    else:
        draw.polygon(((x0, y1), (x1, y1), ((x0 + x1) / 2, y0)), fill=colour)
    return image


def make_tree(root: Path, per_class: int, seed: int) -> Path:
    rng = random.Random(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            suffix = '.png' if i % 2 else '.jpg'
            draw_shape(kind, SIZES[i % len(SIZES)], rng).save(root / kind / f'{i:03d}{suffix}')
    return root


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """(training tree, test tree) of coloured shapes."""
    base = tmp_path_factory.mktemp('shapes')
    return make_tree(base / 'shapes', 12, seed=0), make_tree(base / 'shapes_test', 4, seed=1)


def overrides(train_dir: Path, output: Path, *extra: str) -> list[str]:
    """A seconds-long resnet20 run on the tree: batch 8, 6 images held out for validation, one epoch."""
    return ['data.format=imagefolder', f'data.dir={train_dir}', 'data.val_size=6', 'batch_size=8', 'epochs=1',
            f'output={output}', 'log.progress=false', 'log.tensorboard=false', 'scheduler.warmup_epochs=0', *extra]


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- reading ------------------------------------------------------------------------------------------------------

def test_reads_classes_from_folders_and_resizes_like_predict(shapes):
    train_dir, _ = shapes
    model_cfg = timm.models.get_pretrained_cfg('resnet20').to_dict()
    images, labels, classes = load_image_folder(train_dir, model_cfg)
    assert classes == CLASSES
    assert images.shape == (36, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    # a 48x40 image gets exactly the pixels `cifar-timm predict`'s transform feeds the model (before normalising)
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=timm.create_model('resnet20')))
    mean, std = torch.tensor(model_cfg['mean'])[:, None, None], torch.tensor(model_cfg['std'])[:, None, None]
    with Image.open(train_dir / 'square' / '001.png') as image:
        expected = transform(image.convert('RGB'))
    torch.testing.assert_close((images[13].float() / 255 - mean) / std, expected, atol=1e-5, rtol=0)
    # red circles are red on the 32x32 copy too
    assert images[:12, 0].float().mean() > images[:12, 2].float().mean() + 50


def _bad_tree(tmp_path: Path, problem: str) -> Path:
    root = make_tree(tmp_path / 'tree', 2, seed=0)
    if problem == 'empty class':
        (root / 'hexagon').mkdir()
    elif problem == 'non-image files':
        (root / 'circle' / 'notes.txt').write_text('not an image')
        (root / '.DS_Store').write_text('hidden files are skipped')
    elif problem == 'one class':
        for kind in CLASSES[1:]:
            for f in (root / kind).iterdir():
                f.unlink()
            (root / kind).rmdir()
    elif problem == 'no class folders':
        root = tmp_path / 'flat'
        root.mkdir()
        draw_shape('circle', (32, 32), random.Random(0)).save(root / 'a.png')
    elif problem == 'split folders':
        root = tmp_path / 'splits'
        make_tree(root / 'train', 1, seed=0), make_tree(root / 'test', 1, seed=1)
    elif problem == 'undecodable image':
        (root / 'square' / 'broken.png').write_bytes(b'\x89PNG this is not really a PNG')
    return root


@pytest.mark.parametrize('problem, message', [
    ('empty class', r'class folders without images: .*hexagon\. Add images .* or remove the folders'),
    ('non-image files', r'1 files in .* are not images by their extension \(.*notes\.txt\): move them out'),
    ('one class', r'has one class folder \(circle\); a classifier needs at least two: add one folder per class'),
    ('no class folders', r'has no class folders \(it holds 1 files directly\).*put the images of each class'),
    ('split folders', r'looks like a folder of splits \(test, train\).*data\.dir=.*train \(and data\.test_dir='),
    ('undecodable image', r'broken\.png is not a readable image .*replace it with a valid image file, or delete'),
])
def test_bad_trees_say_what_is_wrong_and_how_to_fix_it(tmp_path, problem, message):
    root = _bad_tree(tmp_path, problem)
    with pytest.raises(ImageFolderError, match=message):
        load_image_folder(root, timm.models.get_pretrained_cfg('resnet20').to_dict())


def test_bad_tree_stops_train_py_with_the_message(tmp_path, capsys):
    from cifar_timm.training import main
    root = _bad_tree(tmp_path, 'one class')
    assert main(['--config', str(RESNET20), *overrides(root, tmp_path / 'run')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('train.py: error: ') and 'one class folder' in err and 'Traceback' not in err
    assert not (tmp_path / 'run').exists()  # nothing written before the data is known to be usable


def test_validation_split_larger_than_the_tree_is_a_config_error(shapes, tmp_path):
    train_dir, _ = shapes
    with pytest.raises(ConfigError, match=r'data.val_size=5000 images cannot be held out of the 36 images of shapes: '
                                          r'set data.val_size to fewer, e.g. data.val_size=3'):
        train(load_config(RESNET20, overrides(train_dir, tmp_path / 'run', 'data.val_size=5000')))


def test_scan_matches_torchvision_image_folder(shapes):
    from torchvision.datasets import ImageFolder
    train_dir, _ = shapes
    classes, samples = scan_image_folder(train_dir)
    reference = ImageFolder(str(train_dir))
    assert list(classes) == reference.classes
    assert [(str(p), y) for p, y in samples] == reference.samples


# ---- training, export, loading back, predicting ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def shapes_run(shapes, tmp_path_factory) -> Path:
    train_dir, test_dir = shapes
    output = tmp_path_factory.mktemp('runs') / 'shapes'
    train(load_config(RESNET20, overrides(train_dir, output, f'data.test_dir={test_dir}')))
    return output


def test_run_logs_and_exports_with_the_class_names(shapes_run):
    export = shapes_run / 'export'
    config = json.loads((export / 'config.json').read_text())
    assert config['architecture'] == 'resnet20' and config['num_classes'] == 3
    assert list(config['pretrained_cfg']['label_names']) == list(CLASSES)
    results = json.loads((export / 'results.json').read_text())
    assert results['dataset'] == 'shapes' and results['label_names'] == list(CLASSES)
    assert results['n_test'] == 12 and len(results['top1_test_ci95']) == 2 and 'top1_exact' not in results
    assert results['top1_val'] is not None  # the 6 held-out images
    assert (shapes_run / 'metrics.csv').read_text().count('\n') == 2  # header + one epoch
    assert load_file(export / 'model.safetensors')['head.fc.weight'].shape == (3, 64)


def test_export_loads_back_through_timm_with_its_classes(shapes_run):
    export = shapes_run / 'export'
    model = timm.create_model(f'local-dir:{export}', pretrained=True).eval()
    assert model.num_classes == 3 and list(model.pretrained_cfg['label_names']) == list(CLASSES)
    state = load_file(export / 'model.safetensors')
    assert torch.equal(model.state_dict()['head.fc.weight'], state['head.fc.weight'])


def test_predict_names_the_folder_classes(shapes_run, shapes, capsys):
    _, test_dir = shapes
    image = test_dir / 'triangle' / '002.jpg'
    checkpoint = shapes_run / 'export' / 'model.safetensors'
    assert cli_main(['predict', 'resnet20', '--checkpoint', str(checkpoint), str(image), '--json', '--top-k', '3',
                     '--device', 'cpu']) == 0
    [result] = json.loads(capsys.readouterr().out)['results']
    assert sorted(p['label'] for p in result['predictions']) == sorted(CLASSES)
    assert abs(sum(p['probability'] for p in result['predictions']) - 1) < 1e-4


def test_cifar_timm_export_card_names_the_dataset(shapes_run, tmp_path, monkeypatch):
    tags = tmp_path / 'tags.json'
    monkeypatch.setenv(TAGS_FILE_ENV, str(tags))
    assert cli_main(['export', str(shapes_run), '--hub-dir', str(tmp_path / 'hub')]) == 2  # c10 is CIFAR-10's tag
    assert cli_main(['export', str(shapes_run), '--tag', 'shapes', '--hub-dir', str(tmp_path / 'hub')]) == 0
    card = (tmp_path / 'hub' / 'resnet20.shapes' / 'README.md').read_text()
    for text in ('datasets:\n- shapes\n', 'A `resnet20` image classifier for shapes, trained from scratch',
                 '3 classes (circle, square, triangle)', 'name: Top-1 on the 12 test images of shapes',
                 'Trained on shapes, an ImageFolder tree (one folder per class: circle, square, triangle): 30',
                 'with 6 others held out for validation', '| the test images of shapes (data.test_dir) |'):
        assert text in card, text
    assert 'JPEG-decoded' not in card and 'reported by the source' not in card  # CIFAR-10's story, not this run's
    record = json.loads(tags.read_text())['resnet20.shapes']
    assert record['dataset'] == 'shapes' and record['num_classes'] == 3 and record['label_names'] == list(CLASSES)


# ---- starting from the zoo's weights ------------------------------------------------------------------------------

def test_body_lr_scale_groups_survive_the_scheduler():
    model = timm.create_model('resnet20')
    config = load_config(RESNET20, ['optimizer.body_lr_scale=0.1', 'optimizer.lr=0.2', 'scheduler.name=cosine',
                                    'scheduler.warmup_epochs=0'])
    optimizer = build_optimizer(model, config['optimizer'])
    head = {id(p) for p in model.get_classifier().parameters()}
    assert all(id(p) in head for p in optimizer.param_groups[0]['params'])  # the logged LR is the recipe's
    build_scheduler(optimizer, config['scheduler'], epochs=10, updates_per_epoch=5)
    for group in optimizer.param_groups:
        in_head = id(group['params'][0]) in head
        assert all((id(p) in head) == in_head for p in group['params'])
        assert group['lr'] == pytest.approx(0.2 if in_head else 0.02)
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_pretrained_starts_from_the_zoo_weights_with_a_new_classifier(shapes, tmp_path, monkeypatch):
    train_dir, _ = shapes
    torch.manual_seed(1)
    zoo = timm.create_model('resnet20').state_dict()  # stands in for published CIFAR-10 weights of resnet20
    # under the name `pretrained=True` resolves (the default tag, if resnet20 has one), with no record to vouch for
    # the published file's sha256 and no checkout hub/ to find the published file in
    tag = timm.models.get_pretrained_cfg('resnet20').tag
    folder = tmp_path / 'weights' / (f'resnet20.{tag}' if tag else 'resnet20')
    folder.mkdir(parents=True)
    save_file(zoo, folder / 'model.safetensors')
    (tmp_path / 'tags.json').write_text('{}')
    monkeypatch.setenv(TAGS_FILE_ENV, str(tmp_path / 'tags.json'))
    monkeypatch.setenv(HUB_DIR_ENV, str(tmp_path / 'no-hub'))
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / 'weights'))
    output = tmp_path / 'finetune'
    # the body learns at a millionth of the LR: it leaves training as it came from the zoo
    train(load_config(RESNET20, overrides(train_dir, output, 'pretrained=true', 'optimizer.body_lr_scale=0.000001')))
    tuned = load_file(output / 'export' / 'model.safetensors')
    for key in ('stem.conv.weight', 'stages.2.2.conv2.weight'):
        torch.testing.assert_close(tuned[key], zoo[key], atol=1e-6, rtol=0)
    assert tuned['head.fc.weight'].shape == (3, 64) and zoo['head.fc.weight'].shape == (10, 64)


def test_pretrained_without_weights_is_a_clear_error(shapes, tmp_path, monkeypatch, capsys):
    from cifar_timm.training import main
    train_dir, _ = shapes
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / 'empty'))
    monkeypatch.setenv(HUB_DIR_ENV, str(tmp_path / 'no-hub'))  # not the checkout's published weights
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    assert main(['--config', str(RESNET20), *overrides(train_dir, tmp_path / 'run', 'pretrained=true')]) == 1
    assert 'resnet20' in capsys.readouterr().err
