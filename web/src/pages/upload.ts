// Upload page (to be written; see issue 12).
import { placeholderPage } from "./placeholder";

export const uploadPage = placeholderPage("Upload");
