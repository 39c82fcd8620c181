-- Argo CD health check for nassync.dev/SyncJob (resource.customizations.health.nassync.dev_SyncJob).
--
-- A SyncJob is "healthy" when its run is proven on the NAS: phase Verified or
-- Cleaned with the Verified condition True (an audit re-verify or the cleanup of
-- a proven run stays Healthy). Failed and Blocked need a person: Degraded, with
-- the operator's own words as the message. spec.suspend with no mover running is
-- Suspended. Everything else (Pending, Gating, Queued, Pushing, Verifying, a
-- spec change the operator has not observed yet) is Progressing.
-- With spec.replicas (status.destinations), Healthy also needs every replica
-- verified (the Replicated condition): a replica still being made or retried
-- is Progressing, a replica given up (state Failed) is Degraded.
--
-- Written for Argo CD's interpreter (gopher-lua, Lua 5.1) and tested with lua5.4:
-- plain tables and strings only, every field may be missing.

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is_true(status, ctype)
  local c = condition(status, ctype)
  return c ~= nil and c.status == "True"
end

local hs = {}
local spec = obj.spec or {}
local status = obj.status
local meta = obj.metadata or {}

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the nassync operator to pick up the SyncJob"
  return hs
end

local phase = status.phase
local mover_running = status.moverJob ~= nil and (status.moverJob.state == nil or status.moverJob.state == "Running")

if meta.generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < meta.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the nassync operator to observe generation " .. tostring(meta.generation) .. " (phase " .. phase .. ")"
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  if status.lastError ~= nil and status.lastError.message ~= nil and status.lastError.message ~= "" then
    hs.message = status.lastError.message
  else
    local failed = condition(status, "Failed")
    hs.message = (failed ~= nil and failed.message) or "The SyncJob failed"
  end
  return hs
end

if phase == "Blocked" then
  hs.status = "Degraded"
  local gated = condition(status, "Gated")
  if gated ~= nil and gated.message ~= nil and gated.message ~= "" then
    hs.message = gated.message
  else
    hs.message = "The gate blocked this run: fix the files or add spec.overrides"
  end
  return hs
end

local verified = is_true(status, "Verified")
local passes = tostring(status.verifyPasses or 0)

if status.destinations ~= nil and #status.destinations > 1 and phase ~= "Cleaned" then
  for _, d in ipairs(status.destinations) do
    if d.name ~= "primary" and d.state == "Failed" then
      hs.status = "Degraded"
      hs.message = "replica " .. tostring(d.name) .. " was given up: " .. tostring(d.message or "failed")
      return hs
    end
  end
  local replicated = condition(status, "Replicated")
  if verified and phase == "Verified" and (replicated == nil or replicated.status ~= "True") then
    hs.status = "Progressing"
    hs.message = "Verified on the NAS (" .. passes .. " passes); copies " .. tostring(status.copies or "?")
    if replicated ~= nil and replicated.message ~= nil then
      hs.message = hs.message .. ": " .. replicated.message
    end
    return hs
  end
end
if verified and (phase == "Verified" or phase == "Cleaned") then
  hs.status = "Healthy"
  if phase == "Cleaned" then
    hs.message = "Verified on the NAS (" .. passes .. " passes); local data cleaned"
  else
    hs.message = "Verified on the NAS (" .. passes .. " passes)"
  end
  if status.copies ~= nil then
    hs.message = hs.message .. "; copies " .. status.copies .. " verified"
  end
  return hs
end
if verified and (phase == "Verifying" or phase == "Cleaning") then
  -- An audit pass or the cleanup of a run that is already proven on the NAS.
  hs.status = "Healthy"
  hs.message = "Verified on the NAS (" .. passes .. " passes); " .. phase .. " now"
  return hs
end

if spec.suspend == true and not mover_running then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true; the run waits in phase " .. phase
  return hs
end

hs.status = "Progressing"
hs.message = phase
local progress = status.transfer ~= nil and status.transfer.progress or nil
if phase == "Pushing" and progress ~= nil and progress.percent ~= nil then
  hs.message = phase .. " " .. tostring(math.floor(progress.percent)) .. "%"
end
if status.lastError ~= nil and status.lastError.message ~= nil and status.lastError.message ~= "" then
  hs.message = hs.message .. " (last error: " .. status.lastError.message .. ")"
end
return hs
