/* A static task page written the way Mephisto task frontends are: useMephistoTask. */
(function () {
  "use strict";
  const h = React.createElement;
  const { useMephistoTask } = window["mephisto-task"];

  function StaticTask() {
    const task = useMephistoTask();
    const [answer, setAnswer] = React.useState("");
    if (task.blockedReason !== null) {
      return h("p", { id: "blocked" }, task.blockedExplanation);
    }
    if (task.isPreview) {
      return h("p", { id: "preview" }, "Preview: open this page with worker_id and assignment_id.");
    }
    if (task.isLoading || task.initialTaskData === null) {
      return h("p", { id: "loading" }, "Loading...");
    }
    return h(
      "div",
      { id: "task", "data-agent-id": task.agentId },
      h("p", { id: "unit-text" }, task.initialTaskData.text),
      h("input", {
        id: "answer",
        value: answer,
        onChange: (event) => setAnswer(event.target.value),
      }),
      h("button", { id: "submit", onClick: () => task.handleSubmit({ answer: answer }) }, "Submit")
    );
  }

  ReactDOM.createRoot(document.getElementById("app")).render(h(StaticTask));
})();
