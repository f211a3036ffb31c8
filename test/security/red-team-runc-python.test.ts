import { defineRedTeam } from "./red-team.js";

defineRedTeam("runc", "python");
