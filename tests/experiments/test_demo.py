"""pmmrec-demo: PMMRec[cpu] beside SASRec on the bundled data, both with early stopping."""

from recbole_pmmrec.experiments import demo


def test_demo_trains_both_models_to_convergence_with_one_patience(monkeypatch):
    seen = {}

    def fake_benchmark(dataset, models, **kwargs):
        seen.update(dataset=dataset, models=models, **kwargs)
        return [{"status": "ok"}, {"status": "ok"}]

    monkeypatch.setattr(demo, "benchmark", fake_benchmark)
    assert demo.main([]) == 0
    assert seen["dataset"] == "ml-100k-text" and seen["models"] == "PMMRec[cpu],SASRec"
    assert seen["stopping_step"] == 3 and seen["epochs"] == 50
    assert demo.main(["--stopping_step=5", "--epochs=300"]) == 0
    assert seen["stopping_step"] == 5 and seen["epochs"] == 300


def test_demo_fails_when_a_run_fails(monkeypatch):
    monkeypatch.setattr(demo, "benchmark", lambda *a, **k: [{"status": "ok"}, {"status": "error: boom"}])
    assert demo.main([]) == 1
