"""Neural-target groundwork: recordings, readers, weighting, simulator, predictive model, pairs."""

import dataclasses

import numpy as np
import pytest
import torch

from bench.neural.io import read_plain, read_recordings, read_sensorium, write_sensorium
from bench.neural.predictive import ModelParams, correlation, fit
from bench.neural.recordings import RecordingError, Recordings, neuron_weights, oracle_variances
from bench.neural.simulate import SimulationParams, simulate
from bench.neural.target import PairTarget, build_artifact, load_artifact, pairs_from_views, unit_vectors

SMALL = SimulationParams(n_neurons=6, n_images=30, n_oracle=4, n_repeats=3, height=16, width=24, seed=3)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


def hand_recordings():
    """Two oracle images shown three times, one image shown once; two neurons."""
    trial_image = np.array([0, 0, 0, 1, 1, 1, 2])
    responses = np.array([[1, 0], [2, 1], [3, 2], [4, 0], [6, 3], [8, 0], [1, 1]], dtype=np.float32)
    return Recordings(
        images=np.full((3, 1, 4, 4), 0.5, np.float32),
        trial_image=trial_image,
        responses=responses,
        oracle=np.array([True, True, False]),
        tiers=np.array(["test"] * 6 + ["train"]),
        source="hand",
    )


def test_oracle_variances_and_weights_match_hand_computation():
    signal, noise = oracle_variances(hand_recordings())
    # neuron 0: image means 2 and 6 -> Var = 8; trial variances 1 and 4 -> mean 2.5
    # neuron 1: image means 1 and 1 -> Var = 0; trial variances 1 and 3 -> mean 2
    assert signal == pytest.approx([8.0, 0.0]) and noise == pytest.approx([2.5, 2.0])
    assert neuron_weights(signal, noise) == pytest.approx([np.sqrt(8 / 2.5), 0.0])
    assert neuron_weights(signal, noise, np.array([0.5, 0.9])) == pytest.approx([0.5 * np.sqrt(8 / 2.5), 0.0])
    assert neuron_weights(np.array([4.0]), np.array([1.0]), np.array([-0.2])) == pytest.approx([0.0])


def test_simulator_is_seeded_and_keeps_ground_truth(small):
    again = simulate(SMALL)
    assert np.array_equal(small.responses, again.responses) and np.array_equal(small.images, again.images)
    other = simulate(dataclasses.replace(SMALL, seed=4))
    assert not np.array_equal(small.responses, other.responses)
    assert small.images.shape == (34, 1, 16, 24) and 0 <= small.images.min() and small.images.max() <= 1
    assert small.ground_truth.shape == (34, 6) and (small.ground_truth > 0).all()
    assert small.oracle.sum() == 4 and np.bincount(small.trial_image)[small.oracle].tolist() == [3] * 4
    assert set(small.tiers[small.oracle[small.trial_image]]) == {"test"}
    assert small.behavior.shape == (30 + 12, 3) and small.pupil_center.shape == (42, 2)


def test_sensorium_layout_round_trip(small, tmp_path):
    write_sensorium(small, tmp_path / "scan")
    back = read_recordings(tmp_path / "scan")
    assert np.array_equal(back.responses, small.responses) and np.array_equal(back.trial_image, small.trial_image)
    assert np.abs(back.images - small.images).max() <= 0.5 / 255 + 1e-6  # stored 0-255 as Sensorium does
    assert np.array_equal(back.oracle, small.oracle) and np.array_equal(back.tiers, small.tiers)
    assert np.array_equal(back.behavior, small.behavior) and np.array_equal(back.ground_truth, small.ground_truth)
    assert (tmp_path / "scan" / "meta" / "neurons" / "unit_ids.npy").is_file()


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_plain_file_round_trip(small, tmp_path, suffix):
    data = {
        "images": small.images[:, 0],
        "trial_image": small.trial_image,
        "responses": small.responses,
        "behavior": small.behavior,
    }
    path = tmp_path / f"rec{suffix}"
    if suffix == ".npz":
        np.savez(path, **data)
    else:
        import h5py

        with h5py.File(path, "w") as fh:
            for k, v in data.items():
                fh[k] = v
    back = read_plain(path)
    assert np.array_equal(back.responses, small.responses) and np.array_equal(back.images, small.images)
    assert np.array_equal(back.oracle, small.oracle)  # default: images with more than one trial
    assert set(back.tiers) == {"train", "validation", "test"}


def test_corrupted_recordings_name_the_file_and_problem(small, tmp_path):
    scan = write_sensorium(small, tmp_path / "scan")
    bad = np.load(scan / "data" / "responses" / "5.npy")
    bad[0] = np.nan
    np.save(scan / "data" / "responses" / "5.npy", bad)
    with pytest.raises(RecordingError, match=r"scan: responses contain NaN or inf values \(first at \[5, 0\]\)"):
        read_sensorium(scan)
    (scan / "data" / "responses" / "5.npy").unlink()
    with pytest.raises(RecordingError, match="expected 42 files"):
        read_sensorium(scan)
    with pytest.raises(RecordingError, match="missing; is .* a Sensorium-layout scan folder"):
        read_sensorium(tmp_path)
    np.savez(tmp_path / "x.npz", images=small.images, responses=small.responses)
    with pytest.raises(RecordingError, match="x.npz: missing key 'trial_image'"):
        read_plain(tmp_path / "x.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.responses.__setitem__((slice(None), 2), -1.0), "negative responses \\(first: neuron 2\\)"),
        (lambda r: r.responses.__setitem__((slice(None), 1), 3.0), "constant responses \\(first: neuron 1\\)"),
        (lambda r: r.trial_image.__setitem__(r.trial_image == 7, 8), "images have no trials"),
    ],
)
def test_validation_rejects_bad_neurons_and_unshown_images(small, change, message):
    rec = dataclasses.replace(small, responses=small.responses.copy(), trial_image=small.trial_image.copy())
    change(rec)
    with pytest.raises(RecordingError, match=message):
        rec.validate("scan7")


def test_blocked_pairs_equal_the_dense_mean_of_cosine_matrices():
    rng = np.random.default_rng(0)
    views = [unit_vectors(rng.random((23, 9)), rng.random(9) + 0.1) for _ in range(3)]
    dense = sum(v @ v.T for v in views) / 3
    iu = np.triu_indices(23, 1)
    assert np.allclose(pairs_from_views(views, block=5), dense[iu], atol=1e-6)
    target = PairTarget(torch.zeros(23, 1, 2, 2), torch.from_numpy(pairs_from_views(views)), {})
    m = target.matrix().numpy()
    assert np.allclose(m, dense, atol=1e-6) and np.allclose(np.diag(m), 1)


def test_raw_artifact_round_trip_with_validation_report(small, tmp_path):
    meta = build_artifact([small], "raw", None, tmp_path / "raw.pt", {"note": "test"})
    target, loaded = load_artifact(tmp_path / "raw.pt")
    assert target.n == 30 and len(target.pairs) == 30 * 29 // 2 and loaded == meta
    val = meta["validation"][0]
    for key in ("single_trial_vs_repeat_average", "single_trial_vs_ground_truth", "target_vs_ground_truth"):
        assert -1 <= val[key] <= 1
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(Exception, match="not a neuroreg-bench/target file"):
        load_artifact(tmp_path / "other.pt")


def test_predictive_model_fits_through_neuralpredictors(small):
    fm = fit(small, ModelParams(channels=4, layers=1, input_kern=5, max_epochs=2, patience=1), seed=0)
    assert fm.val_correlation.shape == (6,) and fm.test_correlation.shape == (6,)
    pred = fm.predict(small.images[:5])
    assert pred.shape == (5, 6) and (pred > 0).all()
    assert correlation(np.arange(10.0)[:, None], 2 * np.arange(10.0)[:, None]) == pytest.approx([1.0])


def test_a_cut_recording_keeps_its_oracle_images_and_the_trials_of_its_first_images(small):
    from bench.neural.efficiency import first_images

    cut = first_images(small, 20).validate()
    stimuli = np.where(~small.oracle)[0][:20]
    assert (~cut.oracle).sum() == 20 and cut.oracle.sum() == small.oracle.sum()
    # every kept trial still shows the image it showed, with its own responses and tier
    kept = np.isin(small.trial_image, np.concatenate([stimuli, np.where(small.oracle)[0]]))
    assert np.array_equal(cut.images[cut.trial_image], small.images[small.trial_image[kept]])
    assert np.array_equal(cut.responses, small.responses[kept]) and np.array_equal(cut.tiers, small.tiers[kept])
    assert np.array_equal(cut.ground_truth[cut.trial_image], small.ground_truth[small.trial_image[kept]])


def test_efficiency_rows_measure_targets_against_the_truth_per_size():
    from bench.neural.efficiency import efficiency_rows

    sim = SimulationParams(n_neurons=30, n_images=10, n_oracle=20, n_repeats=4, seed=1)
    model = ModelParams(channels=4, layers=1, max_epochs=1)
    rows = efficiency_rows(sim, [120, 60], model, [0, 1])
    assert [r["images"] for r in rows] == [60, 120] and all(r["model_seeds"] == 2 for r in rows)
    for r in rows:
        for key in ("oracle_single_trial_r", "oracle_ensemble_r", "stimuli_raw_target_r", "stimuli_ensemble_target_r"):
            assert -1 <= r[key] <= 1
    # the same population at both sizes: the oracle images and their single trials do not change
    assert rows[0]["oracle_single_trial_r"] == rows[1]["oracle_single_trial_r"]
