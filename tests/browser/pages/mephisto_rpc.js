/*
 * A page on useMephistoRemoteProcedureTask: window.callProcedure(name, args) returns the
 * Promise mephisto-task gives for remoteProcedure(name)(args); results are listed.
 */
(function () {
  "use strict";
  const h = React.createElement;
  const { useMephistoRemoteProcedureTask } = window["mephisto-task"];

  function RemoteTask() {
    const [results, setResults] = React.useState([]);
    const task = useMephistoRemoteProcedureTask({});
    window.callProcedure = (name, args) =>
      task.remoteProcedure(name)(args).then((result) => {
        setResults((shown) => [...shown, name + " -> " + JSON.stringify(result)]);
        return result;
      });

    if (task.blockedReason !== null) {
      return h("p", { id: "blocked" }, task.blockedExplanation);
    }
    if (task.isLoading || task.initialTaskData === null) {
      return h("p", { id: "loading" }, "Loading...");
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
        { id: "results" },
        results.map((text, index) => h("li", { key: index }, text))
      )
    );
  }

  ReactDOM.createRoot(document.getElementById("app")).render(h(RemoteTask));
})();
