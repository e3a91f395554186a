/*
 * A static task page written the way Mephisto task frontends are: useMephistoTask.
 * Refused workers see the backend's failure_reason (blockedExplanation); onboarding
 * shows the onboarding question first. A chosen file goes with the submission as a
 * multipart /submit_task, as Mephisto's HTML task pages post forms with files.
 */
(function () {
  "use strict";
  const h = React.createElement;
  const { useMephistoTask } = window["mephisto-task"];

  async function submitWithFile(agentId, data, file) {
    const form = new FormData();
    form.append("USED_AGENT_ID", agentId);
    form.append("final_string_data", JSON.stringify(data));
    form.append("file", file, file.name);
    const response = await fetch("/submit_task", { method: "POST", body: form });
    window.submitAnswer = await response.json();
    window.handleSubmitToProvider(data);
  }

  function Onboarding({ task }) {
    const [answer, setAnswer] = React.useState("");
    return h(
      "div",
      { id: "onboarding", "data-agent-id": task.agentId },
      h("p", { id: "onboarding-question" }, task.initialTaskData.question),
      h("input", {
        id: "onboarding-answer",
        value: answer,
        onChange: (event) => setAnswer(event.target.value),
      }),
      h(
        "button",
        { id: "onboarding-submit", onClick: () => task.handleSubmit({ answer: answer }) },
        "Start"
      )
    );
  }

  function StaticTask() {
    const task = useMephistoTask();
    const [answer, setAnswer] = React.useState("");
    const fileInput = React.useRef(null);
    if (task.blockedReason !== null) {
      return h("p", { id: "blocked", "data-reason": task.blockedReason }, task.blockedExplanation);
    }
    if (task.isPreview) {
      return h("p", { id: "preview" }, "Preview: open this page with worker_id and assignment_id.");
    }
    if (task.isLoading || task.initialTaskData === null) {
      return h("p", { id: "loading" }, "Loading...");
    }
    if (task.isOnboarding) {
      return h(Onboarding, { task: task });
    }
    function submit() {
      const file = fileInput.current.files[0];
      if (file) {
        submitWithFile(task.agentId, { answer: answer }, file);
      } else {
        task.handleSubmit({ answer: answer });
      }
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
      h("input", { id: "file", type: "file", ref: fileInput }),
      h("button", { id: "submit", onClick: submit }, "Submit")
    );
  }

  ReactDOM.createRoot(document.getElementById("app")).render(h(StaticTask));
})();
