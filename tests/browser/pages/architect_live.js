/*
 * A live task through architect.js: a message list fed by live updates both ways.
 * Optional URL parameters tune the socket for tests: heartbeat_ms, missed_heartbeats,
 * reconnect_max_ms.
 */
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const options = {};
  if (params.get("heartbeat_ms")) options.heartbeatInterval = Number(params.get("heartbeat_ms"));
  if (params.get("missed_heartbeats")) options.missedHeartbeats = Number(params.get("missed_heartbeats"));
  if (params.get("reconnect_max_ms")) options.reconnectMaxDelay = Number(params.get("reconnect_max_ms"));

  const messages = document.getElementById("messages");
  window.connectionHistory = [];

  function addMessage(update, mine) {
    const item = document.createElement("li");
    item.textContent = update.text;
    item.dataset.updateId = update.update_id;
    if (mine) item.className = "mine";
    messages.append(item);
  }

  const task = Architect.connect(
    Object.assign(options, {
      onReady: (ready) => {
        if (ready.isBlocked) {
          const blocked = document.createElement("p");
          blocked.id = "blocked";
          blocked.textContent = ready.failureReason;
          document.body.replaceChildren(blocked);
          return;
        }
        document.getElementById("unit-text").textContent = ready.initData ? ready.initData.text : "";
        ready.connectLive();
      },
      onStatus: (status) => {
        document.getElementById("status").textContent = status;
      },
      onConnectionChange: (state) => {
        window.connectionHistory.push(state);
        document.getElementById("connection").textContent = state;
      },
      // Replayed updates include the page's own earlier messages (they have no "from").
      onLiveUpdate: (update) => addMessage(update, update.from === undefined),
    })
  );
  window.task = task;

  document.getElementById("send").addEventListener("click", async () => {
    const input = document.getElementById("message");
    const sent = await task.sendLiveUpdate({ text: input.value });
    input.value = "";
    addMessage(sent, true);
  });
})();
