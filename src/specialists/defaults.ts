import type { SamplingDefaults, SpecialistDefinition } from "./specialist.js";

/** The API reference's documented defaults; a specialist may set its own in the config file. */
const REFERENCE_SAMPLING: SamplingDefaults = { maxTokens: 512, temperature: 0.7, topP: 1 };

const BASE_MODEL = "base";
const DEFAULT_LABELS = ["positive", "negative", "neutral"] as const;

/** The system prompt of a label classifier, naming its labels so the model knows the task as well as the grammar does. */
export function classifierPrompt(labels: readonly string[]): string {
  return (
    "You are a precise text classifier. Read the user's text and decide which one label fits it best. " +
    `The labels are: ${labels.join(", ")}. ` +
    "Judge the text as a whole, including sarcasm and mixed feelings, and answer with the label alone, nothing else."
  );
}

/** The six specialists of the API reference and the embeddings specialist, all on the one default base model. */
export function defaultSpecialists(): SpecialistDefinition[] {
  const common = { engine: { kind: "embedded", model: BASE_MODEL }, defaults: REFERENCE_SAMPLING } as const;
  return [
    {
      ...common,
      id: "classify",
      description: "Sorts text into one label of a fixed set (sentiment by default); the answer is the bare label.",
      systemPrompt: classifierPrompt(DEFAULT_LABELS),
      output: { type: "labels", labels: DEFAULT_LABELS },
      contextSize: 2048,
    },
    {
      ...common,
      id: "summarise",
      description: "Condenses a text into a short, faithful summary.",
      systemPrompt:
        "You are a summarisation specialist. Summarise the user's text faithfully and concisely. " +
        "Keep the key facts, figures, names and conclusions; drop repetition and filler; never add anything the text does not say. " +
        "Write plain prose, at most a few sentences, and answer with the summary only.",
      output: { type: "text" },
      contextSize: 4096,
    },
    {
      ...common,
      id: "extract",
      description: "Pulls the facts stated in a text into one JSON object.",
      systemPrompt:
        "You are an information-extraction specialist. Extract the entities, attributes, dates, amounts and other facts stated " +
        "in the user's text into a single JSON object with descriptive snake_case keys. Use only information present in the text, " +
        "keep numbers as numbers, and use null for a requested field the text does not give. Answer with the JSON object only.",
      output: { type: "json_object" },
      contextSize: 2048,
    },
    {
      ...common,
      id: "qa",
      description: "Answers a question from the context given with it.",
      systemPrompt:
        "You answer questions using only the context given in the user's message. Answer briefly and directly, quoting figures " +
        "and names exactly as the context gives them. If the context does not contain the answer, say that the context does not say.",
      output: { type: "text" },
      contextSize: 4096,
    },
    {
      ...common,
      id: "chat",
      description: "A general assistant for multi-turn conversation.",
      systemPrompt: "You are Alveare's chat assistant: helpful, honest and concise. Keep track of the conversation so far.",
      output: { type: "text" },
      contextSize: 4096,
    },
    {
      ...common,
      id: "code",
      description: "Writes, explains and fixes code.",
      systemPrompt:
        "You are a programming specialist. Write correct, idiomatic, readable code that does what the user asks, in the language " +
        "they use or ask for. Put code in fenced code blocks, keep explanations short, and point out any assumption you make.",
      output: { type: "text" },
      contextSize: 4096,
    },
    {
      ...common,
      id: "embed",
      description: "Turns text into embedding vectors for search and retrieval (POST /v1/embeddings).",
      systemPrompt: "",
      output: { type: "text" },
      contextSize: 2048,
      kind: "embeddings",
    },
  ];
}
