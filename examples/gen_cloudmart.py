#!/usr/bin/env python3
"""Generates CloudMart telemetry. Deterministic (fixed seed), so replay
outputs are stable golden files.

    python3 examples/gen_cloudmart.py > examples/cloudmart.jsonl
    python3 examples/gen_cloudmart.py --day > /tmp/cloudmart-day.jsonl

Two hours (the default, examples/cloudmart.jsonl), minutes from 09:00Z:
  20-40  EC2 i-0a1 CPU ~92%           -> CloudMart-EC2-HighCPU fires, clears
  30-35  api logs 15 ERROR lines      -> CloudMart-ErrorLogs
  50-56  ALB response 1.6 s           -> CloudMart-ALB-SlowResponse
  60-70  RDS 95 connections, 8 slow queries -> RDS-HighConnections, SlowQueries
  80-95  Redis memory 93%             -> CloudMart-Redis-LowMemory
  90-100 api 5xx at ~12%              -> CloudMart-API-ErrorRate
  100-115 checkout spans ~2.5 s       -> CloudMart-Span-P99Latency
  from 100 i-0c3 stops reporting      -> insufficient_data
Two malformed lines show the rejected-event summary.

A day (--day): 2026-11-28, 00:00Z to 24:00Z (a Saturday in UTC; in Seoul
the Sunday starts at 15:00Z), lighter traffic, for `klaxon replay
--dispatch` with rules/teams, rules/silences and rules/inhibit.yaml
(integration-tests/tests/dispatch_scenario.rs). Times are UTC:
  00:00-01:00  i-0d4 reports, then stops   -> insufficient_data, never fired
  02:00-02:20  ALB response 1.6 s          -> ALB-SlowResponse
  06:30-06:35  payment gateway ERROR lines -> ErrorLogs (alone: not inhibited)
  08:00-08:10  RDS 95 connections, 8 slow queries -> RDS-HighConnections, SlowQueries
  10:00-10:20  Redis memory 93%            -> Redis-LowMemory
  12:40-13:20  i-0b2 CPU 92%   fires before the 13:00-15:00 silence, resolves in it
  13:40-14:10  i-0b2 CPU 92%   fires and resolves inside the silence
  13:40-14:00  i-0a1 CPU 92%   not matched by the silence
  14:40-15:30  i-0b2 CPU 92%   fires in the silence, still firing when it ends
  15:50-16:10  RDS replica 95 connections, then it stops reporting
               -> alarm, then insufficient_data: still firing, repeated every 4 h
  17:20-17:40  Redis memory 93%  inside the Sunday 02:00-04:00 Seoul window
  18:40-19:20  Redis memory 93%  fires in the window, still firing when it closes
  20:00-20:15  api 5xx at 40%  -> API-ErrorRate and ErrorLogs (inhibited)
  23:55-24:00  RDS primary 95 connections -> fires at the end of the input and
               joins the replica's incident at its next tick
"""
import json
import random
import sys
from datetime import datetime, timedelta, timezone

DAY = "--day" in sys.argv[1:]
random.seed(11 if DAY else 7)
if DAY:
    START = datetime(2026, 11, 28, 0, 0, tzinfo=timezone.utc)
else:
    START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
MINUTES = 120
out = []


def ts(minute, second=0.0):
    t = START + timedelta(minutes=minute, seconds=second)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def emit(t, ev):
    out.append((t, json.dumps(ev, separators=(",", ":"))))


def two_hours():
    for m in range(MINUTES):
        for iid in ("i-0a1", "i-0b2", "i-0c3"):
            if iid == "i-0c3" and m >= 100:
                continue
            cpu = random.uniform(25, 55)
            if iid == "i-0a1" and 20 <= m < 40:
                cpu = random.uniform(88, 96)
            emit(m * 60 + 5, {"kind": "metric", "time": ts(m, 5), "name": "CPUUtilization", "namespace": "AWS/EC2",
                              "value": round(cpu, 1), "unit": "Percent", "labels": {"InstanceId": iid}})
        conns = random.randint(30, 60) if not 60 <= m < 70 else random.randint(90, 99)
        emit(m * 60 + 10, {"kind": "metric", "time": ts(m, 10), "name": "DatabaseConnections", "namespace": "AWS/RDS",
                           "value": conns, "unit": "Count", "labels": {"DBInstanceIdentifier": "cloudmart-db"}})
        mem = random.uniform(60, 75) if not 80 <= m < 95 else random.uniform(91, 95)
        emit(m * 60 + 15, {"kind": "metric", "time": ts(m, 15), "name": "DatabaseMemoryUsagePercentage",
                           "namespace": "AWS/ElastiCache", "value": round(mem, 1), "unit": "Percent",
                           "labels": {"CacheClusterId": "cloudmart-redis"}})
        for s in range(0, 60, 10):
            rt = random.uniform(0.08, 0.3) if not 50 <= m < 56 else random.uniform(1.3, 1.9)
            emit(m * 60 + s + 1, {"kind": "metric", "time": ts(m, s + 1), "name": "TargetResponseTime",
                                  "namespace": "AWS/ApplicationELB", "value": round(rt, 3), "unit": "Seconds",
                                  "labels": {"LoadBalancer": "app/cloudmart-alb"}})
        # API access logs: ~30 requests a minute.
        for i in range(30):
            sec = i * 2 + random.random()
            bad = 90 <= m < 100 and random.random() < 0.12
            code = 503 if bad else random.choice([200] * 18 + [201, 404])
            emit(m * 60 + sec, {"kind": "log", "time": ts(m, sec), "service": "api",
                                "level": "ERROR" if code >= 500 else "INFO",
                                "message": f"{'POST /checkout' if i % 5 == 0 else 'GET /products'} {code}",
                                "fields": {"status_code": code, "request_time": round(random.uniform(0.01, 0.4), 3),
                                           "user_id": f"u-{random.randint(1000, 9999)}"}})
        if 30 <= m < 35:
            for i in range(3):
                sec = 5 + i * 17
                emit(m * 60 + sec, {"kind": "log", "time": ts(m, sec), "service": "api", "level": "ERROR",
                                    "message": "ERROR payment gateway timeout", "fields": {"gateway": "pg-1"}})
        # Database query log: a query a minute, slow ones while connections pile up.
        qt = round(random.uniform(0.01, 0.2), 3)
        emit(m * 60 + 30, {"kind": "log", "time": ts(m, 30), "service": "orders-db", "level": "INFO",
                           "message": "query", "fields": {"query_time": qt}})
        if m in (61, 62, 63, 64, 66, 67, 68, 69):
            emit(m * 60 + 40, {"kind": "log", "time": ts(m, 40), "service": "orders-db", "level": "WARN",
                               "message": "slow query: SELECT * FROM orders WHERE ...",
                               "fields": {"query_time": round(random.uniform(1.2, 4.0), 2)}})
        # Traces: checkout spans every 10 s.
        for s in range(0, 60, 10):
            d = random.uniform(80, 400) if not 100 <= m < 115 else random.uniform(2000, 3200)
            tid = f"{random.getrandbits(64):016x}"
            emit(m * 60 + s + 3, {"kind": "span", "time": ts(m, s + 3), "trace_id": tid, "span_id": tid[:8],
                                  "service": "checkout", "name": "POST /checkout", "duration_ms": round(d, 1),
                                  "status": "ok", "attributes": {"http.status_code": 200}})



def finish_two_hours():
    out.sort(key=lambda p: p[0])
    lines = [line for _, line in out]
    # A producer's mistakes: a typo in a field name and a truncated message.
    lines.insert(1000, '{"kind":"metric","time":"2026-11-27T09:10:00Z","name":"CPUUtilization","value":50,"lables":{"InstanceId":"i-0a1"}}')
    lines.insert(3000, '{"kind":"log","time":"2026-11-27T09:30:00Z","service":"api","level":"INFO","mess')
    print("\n".join(lines))


def hot(m, *ranges):
    """Whether minute m falls in one of the (from, to) HH:MM ranges."""
    def minute(hhmm):
        h, mm = hhmm.split(":")
        return int(h) * 60 + int(mm)
    return any(minute(a) <= m < minute(b) for a, b in ranges)


def day():
    for m in range(24 * 60):
        for iid in ("i-0a1", "i-0b2", "i-0c3", "i-0d4"):
            if iid == "i-0d4" and m >= 60:
                continue
            cpu = random.uniform(25, 55)
            if (iid == "i-0b2" and hot(m, ("12:40", "13:20"), ("13:40", "14:10"), ("14:40", "15:30"))) \
                    or (iid == "i-0a1" and hot(m, ("13:40", "14:00"))):
                cpu = random.uniform(88, 96)
            emit(m * 60 + 5, {"kind": "metric", "time": ts(m, 5), "name": "CPUUtilization", "namespace": "AWS/EC2",
                              "value": round(cpu, 1), "unit": "Percent", "labels": {"InstanceId": iid}})
        conns = random.randint(90, 99) if hot(m, ("08:00", "08:10"), ("23:55", "24:00")) else random.randint(30, 60)
        emit(m * 60 + 10, {"kind": "metric", "time": ts(m, 10), "name": "DatabaseConnections", "namespace": "AWS/RDS",
                           "value": conns, "unit": "Count", "labels": {"DBInstanceIdentifier": "cloudmart-db"}})
        if m < 16 * 60 + 10:
            conns = random.randint(90, 99) if hot(m, ("15:50", "16:10")) else random.randint(10, 40)
            emit(m * 60 + 11, {"kind": "metric", "time": ts(m, 11), "name": "DatabaseConnections",
                               "namespace": "AWS/RDS", "value": conns, "unit": "Count",
                               "labels": {"DBInstanceIdentifier": "cloudmart-db-replica"}})
        hot_redis = hot(m, ("10:00", "10:20"), ("17:20", "17:40"), ("18:40", "19:20"))
        mem = random.uniform(91, 95) if hot_redis else random.uniform(60, 75)
        emit(m * 60 + 15, {"kind": "metric", "time": ts(m, 15), "name": "DatabaseMemoryUsagePercentage",
                           "namespace": "AWS/ElastiCache", "value": round(mem, 1), "unit": "Percent",
                           "labels": {"CacheClusterId": "cloudmart-redis"}})
        for s in range(0, 60, 10):
            rt = random.uniform(1.3, 1.9) if hot(m, ("02:00", "02:20")) else random.uniform(0.08, 0.3)
            emit(m * 60 + s + 1, {"kind": "metric", "time": ts(m, s + 1), "name": "TargetResponseTime",
                                  "namespace": "AWS/ApplicationELB", "value": round(rt, 3), "unit": "Seconds",
                                  "labels": {"LoadBalancer": "app/cloudmart-alb"}})
        # API access logs: 10 requests a minute.
        for i in range(10):
            sec = i * 6 + random.random()
            bad = hot(m, ("20:00", "20:15")) and random.random() < 0.4
            code = 503 if bad else random.choice([200] * 18 + [201, 404])
            emit(m * 60 + sec, {"kind": "log", "time": ts(m, sec), "service": "api",
                                "level": "ERROR" if code >= 500 else "INFO",
                                "message": f"{'POST /checkout' if i % 5 == 0 else 'GET /products'} {code}",
                                "fields": {"status_code": code, "request_time": round(random.uniform(0.01, 0.4), 3)}})
        if hot(m, ("06:30", "06:35")):
            for i in range(3):
                sec = 5 + i * 17
                emit(m * 60 + sec, {"kind": "log", "time": ts(m, sec), "service": "api", "level": "ERROR",
                                    "message": "ERROR payment gateway timeout", "fields": {"gateway": "pg-1"}})
        qt = round(random.uniform(0.01, 0.2), 3)
        emit(m * 60 + 30, {"kind": "log", "time": ts(m, 30), "service": "orders-db", "level": "INFO",
                           "message": "query", "fields": {"query_time": qt}})
        if hot(m, ("08:01", "08:05"), ("08:06", "08:10")):
            emit(m * 60 + 40, {"kind": "log", "time": ts(m, 40), "service": "orders-db", "level": "WARN",
                               "message": "slow query: SELECT * FROM orders WHERE ...",
                               "fields": {"query_time": round(random.uniform(1.2, 4.0), 2)}})
        # Traces: checkout spans every 30 s.
        for s in (3, 33):
            d = random.uniform(80, 400)
            tid = f"{random.getrandbits(64):016x}"
            emit(m * 60 + s, {"kind": "span", "time": ts(m, s), "trace_id": tid, "span_id": tid[:8],
                              "service": "checkout", "name": "POST /checkout", "duration_ms": round(d, 1),
                              "status": "ok", "attributes": {"http.status_code": 200}})
    out.sort(key=lambda p: p[0])
    print("\n".join(line for _, line in out))


if DAY:
    day()
else:
    two_hours()
    finish_two_hours()
