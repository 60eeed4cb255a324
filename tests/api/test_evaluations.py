"""POST /runs/{id}/evaluations and friends: validation, deduplication, queueing, cancel (the worker's side is
tests/worker/test_evaluations.py)."""

from __future__ import annotations

from core import evaluations as repo


def test_an_evaluation_is_queued_once_and_an_identical_request_is_the_stored_one(client, fake_worker, queue_len):
    (run_id,) = fake_worker.create("seq2seq")
    fake_worker.train(run_id, [0.9, 0.8], test_metric=0.8)
    body = {"split": "test", "decoding": "beam", "beam_size": 3}
    first = client.post(f"/runs/{run_id}/evaluations", json=body)
    assert first.status_code == 202, first.text
    made = first.json()
    assert (made["status"], made["cached"], made["checkpoint"], made["beam_size"]) == ("queued", False, "best", 3)
    assert first.headers["location"] == f"/evaluations/{made['evaluation_id']}"
    assert queue_len("gpu") == queue_len("cpu") == 1  # the run's device request: any

    again = client.post(f"/runs/{run_id}/evaluations", json={**body, "length_penalty": 0.0, "checkpoint": "best"})
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["evaluation_id"] == made["evaluation_id"]
    assert queue_len("gpu") == 1  # nothing sent again

    # Any parameter that changes the result is another evaluation; greedy ignores beam settings.
    other = client.post(f"/runs/{run_id}/evaluations", json={**body, "beam_size": 4}).json()
    greedy = client.post(f"/runs/{run_id}/evaluations", json={"split": "test", "beam_size": 7}).json()
    greedy_again = client.post(f"/runs/{run_id}/evaluations", json={"split": "test"})
    assert len({made["evaluation_id"], other["evaluation_id"], greedy["evaluation_id"]}) == 3
    assert greedy_again.status_code == 200 and greedy_again.json()["evaluation_id"] == greedy["evaluation_id"]
    assert greedy["beam_size"] is None and greedy["decoding"] == "greedy"

    listed = client.get(f"/runs/{run_id}/evaluations").json()["evaluations"]
    assert {e["id"] for e in listed} == {made["evaluation_id"], other["evaluation_id"], greedy["evaluation_id"]}
    one = client.get(f"/evaluations/{made['evaluation_id']}")
    assert one.status_code == 200 and one.json()["run_id"] == run_id


def test_a_finished_evaluation_answers_from_sql_and_a_cancelled_one_is_queued_again(app, client, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    fake_worker.train(run_id, [0.5, 0.7], test_metric=0.7)
    made = client.post(f"/runs/{run_id}/evaluations", json={"split": "val", "limit": 100}).json()
    with app.state.sessionmaker() as session:  # as a worker would
        claimed = repo.claim_evaluation(session, made["id"], "w1", "cpu", 60)
        assert claimed is not None and claimed.status == "running"
        repo.finish_evaluation(session, made["id"], "succeeded", worker="w1",
                               result={"metric": "accuracy", "value": 0.71, "n": 100, "seconds": 0.1,
                                       "details": {"confusion": [[1]]}, "checkpoint_used": "best",
                                       "checkpoint_epoch": 2})
    cached = client.post(f"/runs/{run_id}/evaluations", json={"split": "val", "limit": 100})
    assert cached.status_code == 200
    assert {k: cached.json()[k] for k in ("cached", "status", "value", "n", "checkpoint_epoch")} == {
        "cached": True, "status": "succeeded", "value": 0.71, "n": 100, "checkpoint_epoch": 2}
    assert client.post(f"/evaluations/{made['id']}/cancel").status_code == 409  # already finished

    queued = client.post(f"/runs/{run_id}/evaluations", json={"split": "test"}).json()
    cancelled = client.post(f"/evaluations/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    requeued = client.post(f"/runs/{run_id}/evaluations", json={"split": "test"})
    assert requeued.status_code == 202 and requeued.json()["id"] == queued["id"]
    assert requeued.json()["status"] == "queued"


def test_an_evaluation_of_a_run_still_training_waits_and_bad_requests_are_refused(client, fake_worker, queue_len):
    (training,) = fake_worker.create("cnn")
    fake_worker.start(training)
    waiting = client.post(f"/runs/{training}/evaluations", json={"split": "test"})
    assert waiting.status_code == 202 and waiting.json()["status"] == "queued"
    assert queue_len("gpu") == 0  # sent when the run succeeds

    (failed,) = fake_worker.create("cnn")
    fake_worker.train(failed, [0.1], status="failed")
    refused = client.post(f"/runs/{failed}/evaluations", json={"split": "test"})
    assert refused.status_code == 409 and "failed" in refused.json()["detail"]

    (cnn,) = fake_worker.create("cnn")
    fake_worker.train(cnn, [0.5])
    for body, words in [({"split": "test", "decoding": "beam"}, "text models"),
                        ({"split": "test", "dataset": "spa-eng"}, "images"),
                        ({"split": "test", "dataset": "no-such-set"}, "no-such-set")]:
        answer = client.post(f"/runs/{cnn}/evaluations", json=body)
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    for body in ({"split": "train"}, {"split": "test", "checkpoint": "middle"}, {"split": "test", "beam_size": 0},
                 {"split": "test", "limit": 0}, {"split": "test", "surprise": 1}):
        assert client.post(f"/runs/{cnn}/evaluations", json=body).status_code == 422
    assert client.post(f"/runs/{'0' * 32}/evaluations", json={"split": "test"}).status_code == 404
    assert client.get(f"/evaluations/{'0' * 32}").status_code == 404
    assert client.get("/evaluations/not-an-id").status_code == 404


def test_the_event_stream_of_a_finished_evaluation_sends_its_status_and_ends(app, client, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    fake_worker.train(run_id, [0.5])
    made = client.post(f"/runs/{run_id}/evaluations", json={"split": "test"}).json()
    with app.state.sessionmaker() as session:
        repo.claim_evaluation(session, made["id"], "w1", "cpu", 60)
        repo.set_progress(session, made["id"], "w1", 10, 20)
        repo.finish_evaluation(session, made["id"], "succeeded", worker="w1",
                               result={"metric": "accuracy", "value": 0.5, "n": 20, "seconds": 0.1})
    with client.stream("GET", f"/evaluations/{made['id']}/events") as stream:
        text = "".join(stream.iter_text())
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "event: status" in text and '"status": "succeeded"' in text and '"done": 20' in text
