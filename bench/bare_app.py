"""The baseline: a bare FastAPI endpoint that reads the body and answers JSON, nothing else."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/slack")
async def accept(request: Request) -> dict:
    await request.body()
    return {"accepted": 1}
