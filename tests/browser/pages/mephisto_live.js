/*
 * A live chat page on useMephistoLiveTask, the way Mephisto's live task frontends are built.
 * Optional URL parameters make the socket notice a dead connection sooner (through the
 * hook's public customConnectionHook): heartbeat_ms, missed_heartbeats; with them the page
 * also keeps trying for 30 missed heartbeats (instead of 10) before giving up.
 */
(function () {
  "use strict";
  const h = React.createElement;
  const { useMephistoLiveTask, useMephistoSocket } = window["mephisto-task"];
  const params = new URLSearchParams(window.location.search);
  const socketConfig = {};
  if (params.get("heartbeat_ms")) socketConfig.heartbeatTime = Number(params.get("heartbeat_ms"));
  if (params.get("missed_heartbeats")) {
    socketConfig.refreshSocketMissedResponses = Number(params.get("missed_heartbeats"));
    socketConfig.routerDeadTimeout = 30;
  }
  window.connectionHistory = [];

  function useTunedSocket(handlers) {
    return useMephistoSocket(Object.assign({}, handlers, { config: socketConfig }));
  }

  function LiveTask() {
    const [messages, setMessages] = React.useState([]);
    const [draft, setDraft] = React.useState("");
    const task = useMephistoLiveTask({
      // Called from socket callbacks made at connect time: only stable setters here.
      onLiveUpdate: (update) => setMessages((shown) => [...shown, update]),
      customConnectionHook: useTunedSocket,
    });
    window.liveTask = task;

    React.useEffect(() => {
      window.connectionHistory.push(task.connectionStatus);
    }, [task.connectionStatus]);
    React.useEffect(() => {
      if (task.agentId && !task.isOnboarding) task.connect(task.agentId);
    }, [task.agentId]);

    if (task.blockedReason !== null) {
      return h("p", { id: "blocked" }, task.blockedExplanation);
    }
    if (task.isLoading || task.initialTaskData === null) {
      return h("p", { id: "loading" }, "Loading...");
    }
    function send() {
      const update = { text: draft };
      setDraft("");
      setMessages((shown) => [...shown, update]);
      task.sendLiveUpdate(update);
    }
    return h(
      "div",
      { id: "task", "data-agent-id": task.agentId },
      h(
        "p",
        { className: "state" },
        "status: ",
        h("span", { id: "status" }, task.agentStatus || "none"),
        ", connection: ",
        h("span", { id: "connection" }, task.connectionStatus || "idle")
      ),
      h("p", { id: "unit-text" }, task.initialTaskData.text),
      h(
        "ul",
        { id: "messages" },
        messages.map((update, index) =>
          h("li", { key: index, className: update.from ? "" : "mine" }, update.text)
        )
      ),
      h("input", { id: "message", value: draft, onChange: (event) => setDraft(event.target.value) }),
      " ",
      h("button", { id: "send", onClick: send }, "Send")
    );
  }

  ReactDOM.createRoot(document.getElementById("app")).render(h(LiveTask));
})();
