-- Argo CD health check for aistack.dev/AIStack (Lua 5.1, as Argo CD runs it).
-- Healthy: Ready=True for the current generation. Progressing: no status yet, a generation the
-- operator has not observed, Ready=Unknown, or Ready=False while still converging.
-- Degraded: Ready=False for any other reason, with the first failing layer's message.
local LAYERS = {"ModelReady", "RetrievalReady", "GuardrailsReady", "TrackingReady", "GatewayReady"}
local CONVERGING = {Progressing = true, Pending = true, Reconciling = true, Creating = true, Waiting = true}

local hs = {}
local status = obj.status
local generation = obj.metadata ~= nil and obj.metadata.generation or nil

local function stale(observed)
  return generation ~= nil and (observed == nil or observed < generation)
end

if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the aistack operator to report status"
  return hs
end
if stale(status.observedGeneration) then
  hs.status = "Progressing"
  hs.message = "Waiting for the aistack operator to observe generation " .. tostring(generation)
  return hs
end

local byType = {}
for _, condition in ipairs(status.conditions) do
  if condition.type ~= nil then
    byType[condition.type] = condition
  end
end

local ready = byType["Ready"]
if ready == nil or ready.status == "Unknown" or (ready.observedGeneration ~= nil and stale(ready.observedGeneration)) then
  hs.status = "Progressing"
  hs.message = (ready ~= nil and ready.message ~= nil and ready.message ~= "") and ready.message
    or "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = (ready.message ~= nil and ready.message ~= "") and ready.message or "Ready"
  return hs
end

-- Ready=False: the first layer failing for a real reason decides (Degraded), else the first
-- layer still converging (Progressing), else Ready's own reason.
local function converging(reason)
  return reason == nil or reason == "" or CONVERGING[reason] == true
end
local broken, waiting = nil, nil
for _, layer in ipairs(LAYERS) do
  local condition = byType[layer]
  if condition ~= nil and condition.status == "False" then
    if not converging(condition.reason) and broken == nil then
      broken = condition
    elseif converging(condition.reason) and waiting == nil then
      waiting = condition
    end
  end
end

local shown = broken or waiting or ready
if broken ~= nil or not converging(ready.reason) or status.phase == "Degraded" or status.phase == "Failed" then
  hs.status = "Degraded"
  shown = broken or ready
else
  hs.status = "Progressing"
end
hs.message = shown.type .. ": " .. (shown.reason or "") .. ": " .. (shown.message or "")
return hs
