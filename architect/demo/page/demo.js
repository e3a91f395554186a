/*
 * The demo page: the unit's sentence (static), a chat with the task's bot (live),
 * an "Analyse" button calling Python on the server (remote procedure), then a submission.
 */
(function () {
  "use strict";
  const LABELS = ["positive", "negative", "neutral"];
  const FINAL_TEXT = {
    completed: "Submitted. Thank you! The requester now finds it in `architect results`.",
    disconnect: "You were disconnected from this task.",
    timeout: "The time for this task ran out.",
    expired: "The time allowed for this task ran out, or it ended on the server's side.",
    soft_rejected: "Submitted, but the answer was not accepted.",
    returned: "This task was returned.",
  };
  const $ = (id) => document.getElementById(id);

  function notice(text, isError) {
    $("notice").textContent = text;
    $("notice").className = isError ? "notice error" : "notice";
    $("notice").hidden = false;
  }

  function addMessage(who, text) {
    const item = document.createElement("li");
    item.className = who;
    item.textContent = text;
    $("messages").append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function showTask(task) {
    if (task.isPreview) {
      notice("Preview. Open this page as /?worker_id=alice&assignment_id=1 to work on it.");
      return;
    }
    if (task.isBlocked) {
      notice(task.failureReason || "No task for you right now.", true);
      return;
    }
    $("sentence").textContent = task.initData.text;
    $("analyse-text").value = task.initData.text;
    for (const label of LABELS) {
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "label";
      radio.value = label;
      const choice = document.createElement("label");
      choice.append(radio, " " + label);
      $("labels").append(choice);
    }
    $("task").hidden = false;
    task.connectLive();
  }

  const task = Architect.connect({
    onReady: showTask,
    onError: (error) => notice("Could not reach the task: " + error.message, true),
    onStatus: (status) => {
      $("status").textContent = status;
      $("submit").disabled = status !== "in task";
      if (FINAL_TEXT[status]) {
        notice(FINAL_TEXT[status], status !== "completed");
        $("task").hidden = true;
      }
    },
    onConnectionChange: (state) => {
      $("connection").textContent = state;
    },
    // Replayed updates (after a reload) include the worker's own messages, without "from".
    onLiveUpdate: (update) => addMessage(update.from === "bot" ? "bot" : "mine", update.text),
  });
  window.task = task;

  $("chat").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    addMessage("mine", text);
    await task.sendLiveUpdate({ text: text });
  });

  $("analyse-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("analysis").textContent = "...";
    $("analysis-error").hidden = true;
    try {
      const result = await task.callRemote("analyse", { text: $("analyse-text").value });
      $("analysis").textContent =
        result.words + " words, " + result.characters + " characters; longest word: " +
        result.longest_word;
    } catch (error) {
      $("analysis").textContent = "";
      $("analysis-error").textContent = "The server said: " + error.message;
      $("analysis-error").hidden = false;
    }
  });

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = document.querySelector('input[name="label"]:checked');
    if (!chosen) {
      notice("Pick a label first.", true);
      return;
    }
    $("submit").disabled = true;
    try {
      await task.submit({ label: chosen.value, messages: $("messages").children.length });
    } catch (error) {
      $("submit").disabled = false;
      notice("The submission failed: " + error.message, true);
    }
  });
})();
