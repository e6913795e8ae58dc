"""The lineage of one full platform run, without running it: the 16 DAGs of the five domains
with their real DAG and task ids (as the domains' bundles define them) and the datasets each
task reports through ``shared.lineage`` (the domains' ``record_*`` calls: tables, lake files,
HTTP resources, Redis key spaces, Kafka topics, mailboxes), named as a full run of
``tests/test_first_day.py`` names them (stand-ins on local ports, the lake under ``file``).

Its shape is the store's after such a run: 5 domains, 16 DAGs, 69 task jobs, 94 datasets
(a real run's store listed 89 to 101, as lake file names vary), 14 of them between DAGs, the
same 14 as a real run's (8 in aurora, 6 in ecommerce_ml). No dataset of a real run
is shared between domains (each domain has its own database, services and mailbox), so
neither is one here. Used by the Lineage page's browser test (tests/test_lineage_page.py) to
look at the platform view at full scale in seconds instead of a 30-minute run.
"""

from __future__ import annotations

from tests.lineage_explorer.events import Dag, Ds, Task, pg

DAY = "2026-12-04"
LAKE = "/work/.local/ecommerce_ml/lake"
SMTP = "smtp://127.0.0.1:1025"


def full_run(port: int = 5432) -> list[Dag]:
    """Every DAG of the platform (tests/newcomer.py's DAGS) with what its tasks read and write."""
    return [*aurora(port), *ecommerce_ml(port), *hss_workflow(port), *looklyy(port), *referral(port)]


def aurora(port: int) -> list[Dag]:
    t = {name: pg(port, "aurora", name) for name in (
        "users", "life_events", "sleep_records", "exercise_sessions", "social_connections", "training_datasets",
        "model_registry", "predictions", "event_outbox", "feature_store", "quality_runs", "quality_results",
        "integrations", "integration_syncs", "achievements", "user_achievements", "user_gamification")}
    history = (t["users"], t["life_events"], t["sleep_records"], t["exercise_sessions"], t["social_connections"])
    redis, kafka = "redis://127.0.0.1:57165", "kafka://127.0.0.1:44391"
    alerts = Ds(SMTP, "aurora-team@platform.local")
    return [
        Dag("data_quality_pipeline", "aurora", (
            Task("check_life_events", (t["life_events"],)),
            Task("check_users", (t["users"],)),
            Task("check_integrations", (t["integrations"], t["integration_syncs"])),
            Task("check_gamification", (t["user_gamification"], t["user_achievements"], t["users"], t["achievements"])),
            Task("store_quality_report", (), (t["quality_runs"], t["quality_results"])),
            Task("send_critical_alerts", (t["quality_runs"],), (t["quality_runs"], alerts)),
        )),
        Dag("feature_engineering_pipeline", "aurora", (
            Task("compute_user_activity_features", (t["users"], t["life_events"]), (t["training_datasets"],)),
            Task("compute_sleep_features", (t["sleep_records"],), (t["training_datasets"],)),
            Task("compute_exercise_features", (t["exercise_sessions"],), (t["training_datasets"],)),
            Task("compute_social_features", (t["social_connections"],), (t["training_datasets"],)),
            Task("update_feature_store", (t["training_datasets"],), (t["feature_store"], Ds(redis, "aurora:features:"))),
        )),
        Dag("ml_training_pipeline", "aurora", (
            Task("extract_training_data", history, (t["training_datasets"],)),
            Task("engineer_features", (t["training_datasets"],), (t["training_datasets"],)),
            *(Task(f"train_{target}_model", (t["training_datasets"], t["model_registry"]),
                   (t["model_registry"], t["event_outbox"])) for target in ("energy", "mood", "sleep")),
            Task("publish_training_results", (t["model_registry"],), (Ds(redis, "aurora:models:"), Ds(kafka, "aurora.training"))),
        )),
        Dag("prediction_pipeline", "aurora", (
            Task("get_active_users", (t["users"],), (t["training_datasets"],)),
            *(Task(f"predict_{target}", (t["training_datasets"], t["model_registry"], *history), (t["training_datasets"],))
              for target in ("energy", "mood", "sleep_quality")),
            Task("save_predictions", (t["training_datasets"],), (t["predictions"], t["event_outbox"])),
            Task("cache_predictions", (t["predictions"],), (Ds(redis, "aurora:predictions:"),)),
            Task("publish_prediction_events", (t["event_outbox"],), (t["event_outbox"], Ds(kafka, "aurora.predictions"))),
        )),
    ]


def ecommerce_ml(port: int) -> list[Dag]:
    def table(name: str) -> Ds:
        return pg(port, "ecommerce_ml", name)

    def raw(name: str) -> Ds:
        return Ds("file", f"{LAKE}/raw/{name.split('.')[0]}/dt={DAY}/{name}")

    def curated(folder: str, name: str) -> Ds:
        return Ds("file", f"{LAKE}/curated/{folder}/v={DAY}/{name}")

    registry = table("dataset_registry")
    articles, customers = raw("articles.csv"), raw("customers.csv")
    transactions, reviews_csv = raw("transactions_train.csv"), raw("reviews.csv")
    events, images = Ds("file", f"{LAKE}/raw/events"), Ds("file", f"{LAKE}/raw/images/hm")
    interactions = curated("interactions", "part-4040be13ae94768c.parquet")
    article_file = curated("article_features", "articles-f17cac6597d4feba.parquet")
    matrix = curated("user_item_matrix", "matrix-a047cda8f53c4dec.parquet")
    customer_file = curated("customer_features", "customers-115d50291fbee00e.parquet")
    groups = curated("sales_daily_group", "groups-b0dde6f00b3ea0e4.parquet")
    sales_file = curated("sales_daily_article", "articles-146ea1bfc8d63a77.parquet")
    funnels = tuple(curated(f"funnel_{part}", f"funnel_article-87e5ea35997655{i}.parquet")
                    for i, part in enumerate(("interval", "article", "sessions")))
    sessions = curated("event_sessions", f"sessions-{DAY}T2245-5d0c3e8a41b29f17.parquet")  # one file per slot
    embedding_tables = tuple(table(n) for n in ("article_sentence_embeddings", "article_tfidf_vectors",
                                                 "article_image_embeddings"))
    review_tables = tuple(table(n) for n in ("reviews", "review_sentiment", "review_embeddings"))
    return [
        Dag("ecommerce_ml_user_item_interactions", "ecommerce_ml", (
            Task("validate_transactions", (transactions, customers, articles)),
            Task("build_interactions", (transactions, customers, articles),
                 (interactions, table("interaction_rejections"), registry)),
            Task("load_interactions", (interactions,), (table("interactions"),)),
            Task("build_user_item_matrix", (interactions,), (matrix, registry)),
        )),
        Dag("ecommerce_ml_article_content", "ecommerce_ml", (
            Task("validate_articles", (articles,)),
            Task("build_article_features", (articles, images), (article_file,)),
            Task("load_article_features", (article_file,), (table("article_features"), table("article_changes"),
                                                            table("article_content_history"), registry)),
        )),
        Dag("ecommerce_ml_article_embeddings", "ecommerce_ml", (
            Task("prepare", (table("article_features"),)),
            Task("embed_articles", (table("article_features"), table("embedding_models")),
                 (*embedding_tables, table("embedding_models"))),
            Task("check_and_record", embedding_tables, (registry,)),
        )),
        Dag("ecommerce_ml_customer_features", "ecommerce_ml", (
            Task("validate_customers", (customers,)),
            Task("build_customer_features", (customers, interactions, article_file),
                 (customer_file, table("customer_features"), registry)),
        )),
        Dag("ecommerce_ml_time_series", "ecommerce_ml", (
            Task("build_time_series", (interactions, article_file),
                 (sales_file, groups, table("sales_daily_article"), table("sales_daily_group"), registry)),
        )),
        Dag("ecommerce_ml_events_funnels", "ecommerce_ml", (
            Task("validate_events", (events,)),
            Task("sessionise_and_funnel", (events,), (*funnels, sessions, *(table(n) for n in (
                "funnel_interval", "funnel_article", "event_rejections", "event_files")), registry)),
            Task("reprocess_late_slots", (table("event_files"), table("funnel_interval")), (table("funnel_interval"),)),
        )),
        Dag("ecommerce_ml_reviews_nlp", "ecommerce_ml", (
            Task("load_reviews", (reviews_csv,), (review_tables[0],)),
            Task("score_reviews", (review_tables[0],), review_tables[1:]),
            Task("aggregate", review_tables, (table("article_review_aggregates"),)),
        )),
    ]


def hss_workflow(port: int) -> list[Dag]:
    def table(name: str) -> Ds:
        return pg(port, "hss_workflow", name)

    def api(port_: int, path: str) -> Ds:
        return Ds(f"http://127.0.0.1:{port_}", path)

    song = Ds("file", "/work/.local/hss_workflow/songs/sample_song.mp3")
    drop = Ds("file", "/work/.local/hss_workflow/training_drop")
    dataset = Ds("file", f"/work/.local/hss_workflow/training_drop/training_{DAY}.csv")
    rows, runs = table("training_rows"), table("training_runs")
    return [
        Dag("comprehensive_analysis", "hss_workflow", (
            Task("validate_request", (song,)),
            Task("audio_analysis", (song, api(50179, "/analyze/comprehensive")), (table("service_results"),)),
            Task("content_analysis", (api(50179, "/analyze/lyrics"),), (table("service_results"),)),
            Task("hit_prediction", (api(52997, "/predict/single"),), (table("service_results"),)),
            Task("ai_insights", (api(51311, "/insights/generate"),), (table("service_results"),)),
            Task("aggregate_results", (table("service_results"),), (table("song_analyses"),)),
        )),
        Dag("daily_model_training", "hss_workflow", (
            Task("wait_for_new_dataset", (drop,)),
            Task("pick_new_dataset", (drop,), (table("dataset_files"),)),
            Task("start_training", (table("dataset_files"),)),
        )),
        Dag("ml_training_smart_ensemble", "hss_workflow", (
            Task("validate_training_config", (dataset,)),
            Task("process_training_dataset", (dataset,), (runs, rows)),
            Task("send_training_batches", (rows,), (api(52997, "/train/batch"),)),
            Task("smart_ensemble_training", (), (api(52997, "/train/ensemble"),)),
            Task("aggregate_training_results", (), (runs, table("training_model_metrics"))),
        )),
    ]


def looklyy(port: int) -> list[Dag]:
    logs = pg(port, "looklyy", "pipeline_logs", "run_id", "step", "status")

    def api(path: str) -> Ds:
        return Ds("http://127.0.0.1:50211", path)

    return [
        Dag("looklyy_crawler_pipeline", "looklyy", (
            Task("global_database_refresh", (), (api("/api/crawler/harper-bazaar"), logs)),
            Task("user_database_sync", (), (api("/api/user/sync-database"), logs)),
            Task("surface_for_manual_review", (), (api("/api/training/setup-review"), logs)),
            Task("wait_for_manual_review", (api("/api/training/review-status"),), (logs,)),
            Task("apply_model_learning", (), (api("/api/training/apply-learning"), logs)),
            Task("send_completion_notification", (logs,), (logs, Ds(SMTP, "looklyy-team@platform.local"))),
        )),
    ]


def referral(port: int) -> list[Dag]:
    def table(name: str) -> Ds:
        return pg(port, "referral", name)

    def bullhorn(entity: str) -> Ds:
        return Ds("http://127.0.0.1:50644", f"/rest-services/corp7/query/{entity}")

    ml = "http://127.0.0.1:50655"
    bookkeeping = (table("sync_watermarks"), table("rejected_records"))
    return [
        Dag("bullhorn_sync_optimized", "referral", (
            Task("sync_candidates", (bullhorn("Candidate"),), (table("candidates"), *bookkeeping)),
            Task("generate_candidate_embeddings", (table("candidates"), Ds(ml, "/v1/embeddings")),
                 (table("candidate_embeddings"),)),
            Task("sync_positions", (bullhorn("JobOrder"),), (table("positions"), *bookkeeping)),
            Task("generate_position_embeddings", (table("positions"), Ds(ml, "/v1/embeddings")),
                 (table("position_embeddings"),)),
            Task("find_matches", tuple(table(n) for n in ("candidate_embeddings", "position_embeddings", "candidates",
                                                          "positions")) + (Ds(ml, "/v1/match"),), (table("matches"),)),
            Task("notify", (table("matches"),), (Ds(SMTP, "referral-team@platform.local"),)),
        )),
    ]
