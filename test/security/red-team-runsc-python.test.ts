import { defineRedTeam } from "./red-team.js";

defineRedTeam("runsc", "python");
