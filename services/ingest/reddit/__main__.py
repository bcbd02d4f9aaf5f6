"""``python -m services.ingest.reddit``: poll Reddit until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal


from services.ingest.publish import ActivityPublisher
from services.ingest.reddit.client import RedditClient
from services.ingest.reddit.poller import RedditPoller
from services.ingest.reddit.settings import RedditSettings
from services.runtime.startup import wait_for
from services.runtime.mongo import database, make_mongo, ping
from services.runtime.telemetry import setup_logging, setup_tracing

log = logging.getLogger("steward.ingest.reddit")


async def main(settings: RedditSettings | None = None) -> None:
    settings = settings or RedditSettings()
    setup_logging(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
    if not settings.reddit_subreddits:
        raise SystemExit("STEWARD_REDDIT_SUBREDDITS names no subreddit")
    if not settings.reddit_client_id:
        raise SystemExit("STEWARD_REDDIT_CLIENT_ID is not set")
    tracer_provider = setup_tracing(settings)
    publisher = ActivityPublisher(settings, settings.publish_timeout_s)
    mongo = make_mongo(settings)

    stop = asyncio.Event()
    polling = False
    main_task = asyncio.current_task()

    def on_signal() -> None:
        stop.set()
        if not polling and main_task is not None:
            main_task.cancel()  # still connecting: nothing in flight to finish

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    try:
        await wait_for("MongoDB", lambda: ping(mongo))
        await publisher.start()
        async with RedditClient(settings) as client:
            poller = RedditPoller(settings, client=client, db=database(mongo, settings),
                                  publish=publisher.publish)
            log.info("polling %s every %.0f s", ", ".join(f"r/{s}" for s in settings.reddit_subreddits),
                     settings.reddit_poll_interval_s)
            polling = True
            await poller.run(stop)
    except asyncio.CancelledError:
        log.info("stopped while connecting")
    finally:
        await publisher.stop()
        await mongo.close()
        tracer_provider.shutdown()
        log.info("reddit poller stopped")


if __name__ == "__main__":
    asyncio.run(main())
